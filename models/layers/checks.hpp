#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "runtime/tensor.hpp"

namespace troupe::models {

/// Throws std::invalid_argument "<who>: <what>" (layers name themselves, e.g.
/// "dense 3", so a bad input in a deep pipeline points at the layer).
[[noreturn]] inline void fail(const std::string& who, const std::string& what) {
  throw std::invalid_argument(who + ": " + what);
}

/// Checks that a batched input is a defined tensor of dtype `t` with at least
/// `min_rank` dimensions (batch included).
inline void check_input(const runtime::tensor& x, runtime::dtype t, std::size_t min_rank,
                        const std::string& who) {
  if (!x.defined())
    fail(who, "undefined input tensor");
  if (x.type() != t)
    fail(who, "expected a " + std::string{runtime::to_string(t)} + " input, got " +
                  std::string{runtime::to_string(x.type())});
  if (x.rank() < min_rank)
    fail(who, "expected an input of rank >= " + std::to_string(min_rank) + ", got shape " +
                  runtime::to_string(x.shape()));
}

/// Checks a gradient arriving in backward against the shape forward produced.
inline void check_grad(const runtime::tensor& dy, const runtime::shape_t& expected,
                       const std::string& who) {
  if (!dy.defined() || dy.type() != runtime::dtype::f32 || dy.shape() != expected)
    fail(who, "output gradient " +
                  (dy.defined() ? std::string{runtime::to_string(dy.type())} + " " +
                                      runtime::to_string(dy.shape())
                                : std::string{"(undefined)"}) +
                  " does not match the forward output f32 " + runtime::to_string(expected));
}

} // namespace troupe::models
