#pragma once

// CAF serialisation of runtime::tensor. Kept out of tensor.hpp so code that
// only computes never includes CAF.

#include <type_traits>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/deserializer.hpp>
#include <caf/error.hpp>
#include <caf/execution_unit.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>
#include <caf/serializer.hpp>

#include "runtime/error.hpp"
#include "runtime/named_tensors.hpp"
#include "runtime/net/tensor_codec.hpp"
#include "runtime/tensor.hpp"

namespace troupe::runtime {

/// Payload cap for tensors deserialised inside `ctx`'s actor system (config key
/// troupe.max-tensor-bytes), or the default outside an actor system.
inline std::uint64_t max_tensor_bytes(caf::execution_unit* ctx) {
  if (ctx == nullptr)
    return default_max_tensor_bytes;
  return caf::get_or(ctx->system().config(), "troupe.max-tensor-bytes",
                     static_cast<std::uint64_t>(default_max_tensor_bytes));
}

/// Writes: defined flag, dtype, device, rank, extents, byte count, then the
/// bytes in one block (apply_raw: the per-element path is ~50x slower).
/// Reads: the same, validating the header before allocating anything; a bad
/// header yields an error, never a crash or an oversized allocation.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tensor& x) {
  if constexpr (std::is_base_of_v<caf::serializer, Inspector>) {
    std::uint8_t defined = x.defined() ? 1 : 0;
    if (auto err = f(defined); err || !defined)
      return err;
    auto h = header_of(x);
    auto type = static_cast<std::uint8_t>(h.type);
    auto kind = static_cast<std::uint8_t>(h.where.kind());
    auto index = h.where.index();
    auto rank = static_cast<std::uint8_t>(h.shape.size());
    if (auto err = f(type, kind, index, rank))
      return err;
    for (auto d : h.shape)
      if (auto err = f(d))
        return err;
    if (auto err = f(h.payload_bytes))
      return err;
    if (h.payload_bytes == 0)
      return caf::none;
    return f.apply_raw(h.payload_bytes, const_cast<void*>(x.raw_data()));
  } else if constexpr (std::is_base_of_v<caf::deserializer, Inspector>) {
    std::uint8_t defined = 0;
    if (auto err = f(defined))
      return err;
    if (defined == 0) {
      x = tensor{};
      return caf::none;
    }
    if (defined != 1)
      return caf::make_error(caf::sec::invalid_argument, "tensor: bad defined flag");
    std::uint8_t type = 0, kind = 0, rank = 0;
    std::int16_t index = 0;
    if (auto err = f(type, kind, index, rank))
      return err;
    auto t = dtype_from_wire(type);
    if (!t)
      return caf::make_error(caf::sec::invalid_argument,
                             "tensor: unknown dtype code " + std::to_string(type));
    if (kind != 0)
      return caf::make_error(caf::sec::invalid_argument,
                             "tensor: only CPU tensors travel in CAF messages");
    if (rank > max_wire_rank)
      return caf::make_error(caf::sec::invalid_argument,
                             "tensor: rank " + std::to_string(rank) + " exceeds the limit");
    tensor_header h;
    h.type = *t;
    h.shape.resize(rank);
    for (auto& d : h.shape)
      if (auto err = f(d))
        return err;
    if (auto err = f(h.payload_bytes))
      return err;
    try {
      validate_tensor_header(h, max_tensor_bytes(f.context()));
    } catch (const input_error& e) {
      return caf::make_error(caf::sec::invalid_argument, std::string{"tensor: "} + e.what());
    }
    auto result = tensor::empty(h.type, std::move(h.shape));
    if (h.payload_bytes > 0)
      if (auto err = f.apply_raw(h.payload_bytes, result.mutable_raw_data()))
        return err;
    x = std::move(result);
    return caf::none;
  } else {
    // Stringification (deep_to_string, logging): describe, don't dump.
    std::string d = x.defined() ? std::string{to_string(x.type())} + to_string(x.shape())
                                : std::string{"undefined"};
    return f(caf::meta::type_name("tensor"), d);
  }
}

/// Parameters or optimizer state by name, as CAF serialises them.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, named_tensors& x) {
  return f(caf::meta::type_name("named_tensors"), x.names, x.tensors, x.meta_keys, x.meta_values);
}

} // namespace troupe::runtime
