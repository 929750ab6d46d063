#pragma once

// The message of the in-process ring all-reduce (local_allreduce.hpp), which
// runs outside the plan's steps when every rank lives in one process. It holds
// shared buffers and only ever travels between actors of one process, so it is
// not a wire type (never serialised, not registered). Change it with
// local_allreduce.cpp.

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

#include "actors/protocol/messages.hpp"
#include "runtime/tensor.hpp"

namespace troupe::actors {

/// What a local_allreduce_msg tells its receiver.
enum class local_part : std::int32_t {
  input = 0,  ///< data: the sender's whole input (shared, not copied)
  result = 1, ///< data: the one result buffer every rank writes its block into (from rank 0)
  done = 2,   ///< no data: the sender's block of the result is written
};

inline std::string to_string(local_part p) {
  switch (p) {
  case local_part::input:
    return "input";
  case local_part::result:
    return "result";
  case local_part::done:
    return "done";
  }
  return "unknown";
}

struct local_allreduce_msg {
  std::int64_t op = 0; ///< operation id chosen by the callers (same on every rank)
  actors::collective_kind kind = actors::collective_kind::none;
  local_part part = local_part::input;
  std::int32_t from = 0;  ///< sender rank
  std::int64_t total = 0; ///< elements of the whole buffer
  runtime::tensor data;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, local_allreduce_msg& x) {
  return f(caf::meta::type_name("local_allreduce_msg"), x.op, x.kind, x.part, x.from, x.total,
           x.data);
}

} // namespace troupe::actors
