#include "actors/plan/rebalancer.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "actors/plan/balance.hpp"

namespace troupe::actors {

namespace {

constexpr std::size_t max_history = 64;

/// The newest steps of `history` that make a window: at least
/// window_steps of them and window_seconds of step time. 0 when the
/// history is too short.
template <class Deque, class Seconds>
std::size_t window_size(const Deque& history, const rebalance_settings& s, Seconds seconds) {
  double total = 0;
  std::size_t n = 0;
  for (auto it = history.rbegin(); it != history.rend(); ++it) {
    total += seconds(*it);
    if (++n >= static_cast<std::size_t>(s.window_steps) && total >= s.window_seconds)
      return n;
  }
  return 0;
}

std::string format_shares(const std::vector<double>& shares) {
  std::vector<std::string> parts;
  for (double w : shares)
    parts.push_back(fmt::format("{:.3f}", w));
  return fmt::format("{}", fmt::join(parts, ","));
}

} // namespace

bool rebalance_trigger::update(double gain, const std::vector<double>& proposal,
                               double step_seconds, std::size_t window_steps) {
  if ((since_ += step_seconds) > s_.settle_seconds)
    recent_ = 0;
  if (!(gain >= s_.threshold * static_cast<double>(1 << std::min(recent_, 8)))) {
    proposals_.clear();
    return false;
  }
  const auto confirm = std::max(static_cast<std::size_t>(s_.confirm), window_steps / 2);
  proposals_.push_back(proposal);
  while (proposals_.size() > confirm)
    proposals_.pop_front();
  if (proposals_.size() < confirm)
    return false;
  const auto& first = proposals_.front();
  const auto& last = proposals_.back();
  for (std::size_t i = 0; i < first.size() && i < last.size(); ++i)
    if (std::abs(first[i] - last[i]) > s_.stable * std::max(std::abs(last[i]), 1e-12))
      return false;
  return true;
}

void rebalance_trigger::rebalanced() {
  proposals_.clear();
  ++recent_;
  since_ = 0;
}

share_rebalancer::share_rebalancer(std::vector<double> shares, rebalance_settings s,
                                   std::vector<replica_cost> planned)
    : s_(s), shares_(std::move(shares)), trigger_(s), ceiling_(shares_.size()),
      ceiling_age_(shares_.size(), 0.0), planned_(std::move(planned)) {}

namespace {

/// The cost model of a replica from its mean samples and busy seconds per
/// step now and (when it ran another load) at the last rebalance.
std::optional<replica_cost> fit_cost(double samples, double busy,
                                     const std::optional<replica_point>& anchor) {
  replica_cost proportional{0, busy / samples};
  if (!anchor || std::abs(samples - anchor->samples) < 0.05 * std::max(samples, anchor->samples))
    return proportional;
  const double per_sample = (busy - anchor->busy) / (samples - anchor->samples);
  const double fixed = busy - per_sample * samples;
  // Less work that did not make it faster: its time is not its load's (a
  // quota spent on its transfers pauses its kernels whatever they do). No
  // model of it, so no move until the anchor expires; unless it got much
  // slower, which is the device changing (a throttle), not the load.
  if (!(per_sample > 0))
    return busy > 1.5 * anchor->busy ? std::optional<replica_cost>{proportional} : std::nullopt;
  // A negative fixed cost is noise: proportional.
  return fixed < 0 ? proportional : replica_cost{fixed, per_sample};
}

} // namespace

void share_rebalancer::remember(const std::vector<std::int64_t>& samples,
                                const std::vector<double>& compute, double step_seconds) {
  history_.push_back({samples, compute, step_seconds});
  if (history_.size() > max_history)
    history_.pop_front();
  for (std::size_t r = 0; r < ceiling_.size(); ++r)
    if ((ceiling_age_[r] += step_seconds) > s_.ceiling_seconds)
      ceiling_[r].reset();
  if ((anchor_age_ += step_seconds) > s_.settle_seconds)
    anchor_.clear(); // another regime by now: fit afresh
  since_rebalance_ += step_seconds;
}

std::optional<rebalance_decision>
share_rebalancer::observe(const std::vector<std::int64_t>& samples,
                          const std::vector<double>& compute, double step_seconds) {
  if (samples.size() != shares_.size() || compute.size() != shares_.size())
    return std::nullopt;
  remember(samples, compute, step_seconds);
  const auto n = window_size(history_, s_, [](const step& x) { return x.seconds; });
  if (n == 0)
    return std::nullopt;
  const auto replicas = shares_.size();
  std::vector<double> done(replicas, 0.0), busy(replicas, 0.0);
  double seconds = 0;
  for (auto it = history_.end() - static_cast<std::ptrdiff_t>(n); it != history_.end(); ++it) {
    seconds += it->seconds / static_cast<double>(n);
    for (std::size_t r = 0; r < replicas; ++r) {
      done[r] += static_cast<double>(it->samples[r]) / static_cast<double>(n);
      busy[r] += it->compute[r] / static_cast<double>(n);
    }
  }
  if (rebalanced_ && !baseline_) {
    baseline_ = seconds; // what the last rebalance gave
    return std::nullopt;
  }
  if (rebalanced_ && seconds < *baseline_ * (1 + s_.threshold) &&
      since_rebalance_ < s_.settle_seconds) {
    trigger_.update(0, shares_, step_seconds, n); // nothing changed since: no move
    return std::nullopt;
  }
  std::vector<replica_cost> costs;
  for (std::size_t r = 0; r < replicas; ++r) {
    if (!(done[r] > 0 && busy[r] > 0))
      return std::nullopt; // a replica without work tells nothing of its speed
    if (r < planned_.size() && planned_[r].per_sample > 0) {
      const double slower = std::clamp(busy[r] / done[r] / planned_[r].per_sample, 0.2, 20.0);
      busy[r] += planned_[r].fixed * slower;
    }
    const auto cost = fit_cost(done[r], busy[r], anchor_.empty() ? std::nullopt : anchor_[r]);
    if (!cost)
      return std::nullopt;
    costs.push_back(*cost);
  }
  // The bottleneck works at its sustained speed; the others at most as fast
  // as they last measured so (see the class comment).
  const auto bottleneck =
      static_cast<std::size_t>(std::max_element(busy.begin(), busy.end()) - busy.begin());
  ceiling_[bottleneck] = costs[bottleneck];
  ceiling_age_[bottleneck] = 0;
  for (std::size_t r = 0; r < replicas; ++r)
    if (ceiling_[r]) {
      costs[r].fixed = std::max(costs[r].fixed, ceiling_[r]->fixed);
      costs[r].per_sample = std::max(costs[r].per_sample, ceiling_[r]->per_sample);
    }
  const double batch = std::accumulate(done.begin(), done.end(), 0.0);
  const auto proposal = equal_finish(costs, batch, s_.min_share);
  // The step shrinks by what the slowest replica's compute shrinks by.
  double now = 0, then = 0;
  for (std::size_t r = 0; r < replicas; ++r) {
    now = std::max(now, busy[r]);
    then = std::max(then, costs[r].fixed + costs[r].per_sample * proposal[r] * batch);
  }
  const double gain = seconds / std::max(seconds - (now - then), 1e-9) - 1;
  if (!trigger_.update(gain, proposal, step_seconds, n))
    return std::nullopt;
  std::vector<std::string> speeds;
  for (std::size_t r = 0; r < replicas; ++r)
    speeds.push_back(
        fmt::format("replica {} {:.0f} samples in {:.1f} ms", r, done[r], busy[r] * 1e3));
  rebalance_decision d;
  d.shares = proposal;
  d.predicted_gain = gain;
  d.why = fmt::format("compute per step over the last {} steps of {:.1f} ms: {}; shares {} -> {} "
                      "predict a {:.0f}% shorter step",
                      n, seconds * 1e3, fmt::join(speeds, ", "), format_shares(shares_),
                      format_shares(proposal), 100 * (1 - 1 / (1 + gain)));
  anchor_.clear();
  anchor_age_ = 0;
  rebalanced_ = true;
  baseline_.reset();
  since_rebalance_ = 0;
  for (std::size_t r = 0; r < replicas; ++r)
    anchor_.push_back(replica_point{done[r], busy[r]});
  shares_ = proposal;
  history_.clear();
  trigger_.rebalanced();
  return d;
}

split_rebalancer::split_rebalancer(models::stage_costs layer_costs,
                                   std::vector<models::layer_range> split, rebalance_settings s,
                                   std::vector<split_move> recent)
    : s_(s), costs_(std::move(layer_costs)), split_(std::move(split)), recent_(std::move(recent)),
      trigger_(s) {}

bool split_move::undone_by(const std::vector<models::layer_range>& proposal) const {
  auto size = [](const models::layer_range& r) { return r.end - r.begin; };
  for (std::size_t k = 0; k < from.size() && k < to.size() && k < proposal.size(); ++k)
    if (size(to[k]) < size(from[k]) && size(proposal[k]) > size(to[k]))
      return true;
  return false;
}

std::optional<rebalance_decision>
split_rebalancer::observe(const std::vector<double>& stage_compute, double step_seconds) {
  const auto stages = split_.size();
  if (stage_compute.size() != stages || costs_.layer.size() != stages || stages < 2)
    return std::nullopt;
  history_.emplace_back(stage_compute, step_seconds);
  if (history_.size() > max_history)
    history_.pop_front();
  const auto n = window_size(history_, s_, [](const auto& x) { return x.second; });
  if (n == 0)
    return std::nullopt;
  // Each stage's device, as fast as its layers ran over the window against
  // what the cost model predicted for them; its transfers slow alike (a
  // quota throttles the whole node).
  auto scaled = costs_;
  std::vector<double> factors;
  for (std::size_t k = 0; k < stages; ++k) {
    double observed = 0, predicted = 0;
    for (auto it = history_.end() - static_cast<std::ptrdiff_t>(n); it != history_.end(); ++it)
      observed += it->first[k];
    for (auto l = split_[k].begin; l < split_[k].end; ++l)
      predicted += costs_.layer[k][l] * static_cast<double>(n);
    if (!(observed > 0 && predicted > 0))
      return std::nullopt;
    factors.push_back(observed / predicted);
    for (double& c : scaled.layer[k])
      c *= factors.back();
    if (k < scaled.boundary.size())
      for (double& c : scaled.boundary[k])
        c *= factors.back();
  }
  const auto proposal = models::partition_min_max(scaled);
  // The step shrinks by what its slowest stage's compute shrinks by.
  double seconds = 0;
  for (auto it = history_.end() - static_cast<std::ptrdiff_t>(n); it != history_.end(); ++it)
    seconds += it->second / static_cast<double>(n);
  const double saved =
      models::bottleneck_cost(scaled, split_) - models::bottleneck_cost(scaled, proposal);
  const bool went_back = std::any_of(recent_.begin(), recent_.end(),
                                     [&](const split_move& m) { return m.undone_by(proposal); });
  const double gain = went_back ? 0.0 : seconds / std::max(seconds - saved, 1e-9) - 1;
  std::vector<double> ends;
  for (const auto& r : proposal)
    ends.push_back(static_cast<double>(r.end));
  if (!trigger_.update(gain, ends, step_seconds, n))
    return std::nullopt;
  std::vector<std::string> slow;
  for (std::size_t k = 0; k < stages; ++k)
    slow.push_back(fmt::format("stage {} {:.2f}x", k, factors[k]));
  rebalance_decision d;
  d.split = proposal;
  d.predicted_gain = gain;
  d.why = fmt::format("stage compute over the last {} steps against the plan's: {}; split {} -> {} "
                      "predicts a {:.0f}% shorter step",
                      n, fmt::join(slow, ", "), models::to_string(split_),
                      models::to_string(proposal), 100 * (1 - 1 / (1 + gain)));
  costs_ = std::move(scaled);
  split_ = proposal;
  history_.clear();
  trigger_.rebalanced();
  return d;
}

} // namespace troupe::actors
