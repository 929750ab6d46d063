#include "actors/pipeline/gradient_buckets.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include <caf/send.hpp>

#include "runtime/error.hpp"

namespace troupe::actors {

std::int64_t allreduce_op_id(std::int64_t step, std::size_t bucket) {
  return step * static_cast<std::int64_t>(max_gradient_buckets) + static_cast<std::int64_t>(bucket);
}

std::int64_t broadcast_op_id(std::int64_t n) {
  return -n;
}

namespace {

bool fresh(const models::parameter* p) {
  return p->grad_fresh || !p->grad.defined();
}

/// Whether every gradient of `b` is still the in-place view of its range of
/// `staged` that stage() made (a layer may have replaced one: a gradient of
/// another shape or type).
bool in_staged(const grad_bucket& b, const runtime::tensor& staged) {
  if (!staged.defined())
    return false;
  std::int64_t offset = staged.storage_offset();
  for (const auto* p : b.params) {
    if (!p->grad.shares_storage_with(staged) || !p->grad.writes_in_place() ||
        p->grad.storage_offset() != offset || p->grad.numel() != p->value.numel())
      return false;
    offset += p->value.numel();
  }
  return true;
}

} // namespace

runtime::tensor flatten(const grad_bucket& b, const runtime::tensor& staged) {
  if (in_staged(b, staged)) {
    // The backward wrote every gradient into its range: zeros only where a
    // parameter got none this step.
    for (auto* p : b.params)
      if (fresh(p))
        std::fill_n(p->grad.mutable_data<float>(), p->value.numel(), 0.0f);
    return staged;
  }
  if (b.params.size() == 1 && !fresh(b.params[0]))
    return b.params[0]->grad;
  auto out = runtime::tensor::empty(runtime::dtype::f32, {b.numel});
  float* dst = out.mutable_data<float>();
  for (const auto* p : b.params) {
    const auto n = p->value.numel();
    if (fresh(p))
      std::fill_n(dst, n, 0.0f);
    else
      std::copy_n(p->grad.data<float>(), n, dst);
    dst += n;
  }
  return out;
}

void unflatten(const grad_bucket& b, const runtime::tensor& sum,
               std::vector<runtime::tensor>& own) {
  if (sum.numel() != b.numel)
    throw std::logic_error("all-reduce of a gradient bucket returned " +
                           std::to_string(sum.numel()) + " values, expected " +
                           std::to_string(b.numel));
  if (sum.type() != runtime::dtype::f32)
    throw std::logic_error("all-reduce of a gradient bucket returned a non-f32 tensor");
  std::int64_t offset = 0;
  for (auto* p : b.params) {
    own.push_back(std::move(p->grad));
    // Read only from here on (optimizer, norm); a writer (clipping) copies
    // its range first, as with any shared tensor.
    p->grad = sum.view(offset, p->value.shape());
    p->grad_fresh = false;
    offset += p->value.numel();
  }
}

void gradient_buckets::cut(std::vector<models::sequential>& chunks, std::int64_t bytes) {
  buckets.clear();
  at.assign(chunks.size(), {});
  for (std::size_t v = 0; v < chunks.size(); ++v) {
    auto& chunk = chunks[v];
    at[v].assign(chunk.size(), {});
    grad_bucket open;
    open.chunk = v;
    auto close = [&] {
      if (open.params.empty())
        return;
      at[v][open.ready_layer].push_back(buckets.size());
      buckets.push_back(std::move(open));
      open = grad_bucket{};
      open.chunk = v;
    };
    for (std::size_t l = chunk.size(); l-- > 0;) {
      for (auto& p : chunk.at(l).parameters()) {
        open.params.push_back(&p);
        open.numel += p.value.numel();
        open.ready_layer = l;
      }
      if (bytes > 0 && open.numel * 4 >= bytes)
        close();
    }
    close();
  }
  if (buckets.size() > max_gradient_buckets)
    throw runtime::input_error(std::to_string(buckets.size()) +
                               " gradient buckets (at most 65536): raise --bucket-mb");
  launched.assign(buckets.size(), false);
  launched_at.assign(buckets.size(), {});
  stage();
}

void gradient_buckets::stage() {
  staged.assign(buckets.size(), runtime::tensor{});
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    auto& bucket = buckets[b];
    const bool all_f32 = std::all_of(bucket.params.begin(), bucket.params.end(), [](auto* p) {
      return p->value.type() == runtime::dtype::f32;
    });
    if (!all_f32)
      continue; // flatten() copies them, as before
    staged[b] = runtime::tensor::empty(runtime::dtype::f32, {bucket.numel});
    std::int64_t offset = 0;
    for (auto* p : bucket.params) {
      p->grad = staged[b].in_place_view(offset, p->value.shape());
      p->grad_fresh = true;
      offset += p->value.numel();
    }
  }
}

void gradient_buckets::hand_over(std::size_t b) {
  auto& flat = staged[b];
  if (!flat.defined())
    return;
  for (auto* p : buckets[b].params)
    if (p->grad.writes_in_place() && p->grad.shares_storage_with(flat))
      p->grad = flat.view(p->grad.storage_offset() - flat.storage_offset(), p->value.shape());
  flat = runtime::tensor{};
}

namespace {

/// Member 0's update of bucket `b`: plain SGD on each summed slice, straight
/// into its parameters (the kernel models::sgd::step runs, so the values are
/// bitwise those of the optimizer pass it replaces).
shared_reduction::slice_update sgd_on_slices(const grad_bucket& b,
                                             const std::vector<runtime::tensor>& values,
                                             kernels::cpu::sgd_options o) {
  struct piece {
    std::int64_t offset, count;
    float* value;
  };
  std::vector<piece> pieces;
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < b.params.size(); ++i) {
    // Written in place: member 0 made the storage its own (own_parameters).
    pieces.push_back({offset, values[i].numel(), const_cast<float*>(values[i].data<float>())});
    offset += values[i].numel();
  }
  return [pieces = std::move(pieces), o](std::int64_t first, std::int64_t count, const float* sum) {
    for (const auto& p : pieces) {
      const auto lo = std::max(first, p.offset);
      const auto hi = std::min(first + count, p.offset + p.count);
      if (lo < hi)
        kernels::cpu::sgd_update(p.value + (lo - p.offset), sum + (lo - first), nullptr, hi - lo, o,
                                 true);
    }
  };
}

} // namespace

std::vector<runtime::tensor> gradient_buckets::own_parameters(std::size_t b) {
  if (published.size() != buckets.size())
    published.resize(buckets.size());
  auto& last = published[b];
  const auto& params = buckets[b].params;
  std::vector<runtime::tensor> values;
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto* p = params[i];
    // A tensor not shared before (the first step, or one a restore put in)
    // may be held by others (a snapshot, the broadcast): copy it once.
    if (i >= last.size() || !p->value.shares_storage_with(last[i]))
      p->value.mutable_data<float>();
    values.push_back(p->value);
  }
  last = values;
  return values;
}

void gradient_buckets::launch(const caf::actor& shard, std::int64_t step, float lr,
                              std::size_t chunk, std::optional<std::size_t> layer,
                              runtime::trace_recorder& trace) {
  auto send = [&](std::size_t b) {
    if (launched[b])
      return;
    launched[b] = true;
    auto data = flatten(buckets[b], staged[b]);
    hand_over(b);
    if (shared) {
      launched_at[b] = std::chrono::steady_clock::now();
      if (fused_sgd && member == 0) {
        auto o = *fused_sgd;
        o.lr = lr;
        auto values = own_parameters(b);
        auto update = sgd_on_slices(buckets[b], values, o);
        shared->contribute(allreduce_op_id(step, b), member, std::move(data), std::move(update),
                           std::move(values));
      } else {
        shared->contribute(allreduce_op_id(step, b), member, std::move(data));
      }
    } else {
      caf::anon_send(shard, bucket_ready{step, b, std::move(data)});
    }
    if (trace.enabled())
      trace.instant("bucket ready", "comm", std::chrono::steady_clock::now(),
                    {{"step", step}, {"bucket", static_cast<std::int64_t>(b)}});
  };
  if (layer) {
    for (auto b : at[chunk][*layer])
      send(b);
  } else {
    for (std::size_t b = 0; b < buckets.size(); ++b)
      send(b);
  }
}

gradient_buckets::gathered gradient_buckets::gather(std::int64_t step,
                                                    runtime::trace_recorder& trace) {
  gathering = true;
  struct done_gathering {
    std::atomic<bool>& flag;
    ~done_gathering() { flag = false; }
  } guard{gathering};
  gathered r;
  r.updated = fused_sgd.has_value();
  std::vector<runtime::tensor> sums;
  std::optional<std::chrono::steady_clock::time_point> first, last;
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    if (!launched[b])
      throw std::logic_error("gathering the sums of step " + std::to_string(step) +
                             " before bucket " + std::to_string(b) + " was launched");
    auto s = shared->take(allreduce_op_id(step, b), member);
    if (trace.enabled())
      trace.complete(
          "allreduce", "comm", launched_at[b], s.ready_at,
          {{"step", step}, {"bucket", static_cast<std::int64_t>(b)}, {"bytes", s.bytes}});
    first = first ? std::min(*first, launched_at[b]) : launched_at[b];
    last = last ? std::max(*last, s.ready_at) : s.ready_at;
    r.bytes += static_cast<std::uint64_t>(s.bytes);
    if (fused_sgd && !s.updated)
      throw std::logic_error("bucket " + std::to_string(b) + " of step " + std::to_string(step) +
                             " came back without member 0's update");
    if (s.updated && member != 0) // share member 0's copy, updated
      for (std::size_t i = 0; i < buckets[b].params.size() && i < s.published.size(); ++i)
        if (!buckets[b].params[i]->value.shares_storage_with(s.published[i]))
          buckets[b].params[i]->value = s.published[i];
    if (!s.updated) // else only the update saw the sum
      sums.push_back(std::move(s.data));
  }
  r.buckets = static_cast<std::int32_t>(buckets.size()); // every one was taken
  updated_in_reduction = r.updated;
  if (first)
    r.seconds = std::max(0.0, std::chrono::duration<double>(*last - *first).count());
  put_back(sums);
  return r;
}

void gradient_buckets::put_back(const std::vector<runtime::tensor>& sums) {
  if (sums.empty())
    return;
  restore_grads(); // a sum not yet released (a step that ended early)
  for (std::size_t b = 0; b < sums.size(); ++b)
    unflatten(buckets[b], sums[b], own_grads);
}

void gradient_buckets::restore_grads() {
  if (own_grads.empty())
    return;
  std::size_t i = 0;
  for (auto& b : buckets)
    for (auto* p : b.params)
      if (i < own_grads.size())
        p->grad = std::move(own_grads[i++]);
  own_grads.clear();
}

void allreduce_progress::begin_step(std::size_t buckets) {
  reduced.assign(buckets, runtime::tensor{});
  expected = buckets;
  done = 0;
  flush_requested = false;
  first_launch.reset();
  launched_at.clear();
}

void allreduce_progress::launched(std::size_t bucket, std::chrono::steady_clock::time_point now) {
  if (!first_launch)
    first_launch = now;
  launched_at[bucket] = now;
}

std::optional<double> allreduce_progress::arrived(std::size_t bucket, runtime::tensor sum,
                                                  std::chrono::steady_clock::time_point now) {
  reduced[bucket] = std::move(sum);
  if (++done != expected)
    return std::nullopt;
  return std::chrono::duration<double>(now - *first_launch).count();
}

std::vector<runtime::tensor> allreduce_progress::take() {
  auto r = std::move(reduced);
  reduced.clear();
  return r;
}

} // namespace troupe::actors
