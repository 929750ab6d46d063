#include "actors/training/step_series.hpp"

#include <algorithm>

namespace troupe::actors::training {

namespace {

double ratio(double a, double b) {
  return b > 0 ? a / b : 0.0;
}

} // namespace

step_series::step_series(std::size_t max_points)
    : max_points_(std::max<std::size_t>(2, max_points)) {}

void step_series::merge(point& into, const point& from) {
  into.step = from.step; // the later one: steps done at the merged point's end
  into.steps += from.steps;
  into.loss_sum += from.loss_sum;
  into.tokens += from.tokens;
  into.correct += from.correct;
  into.samples += from.samples;
  into.lr_sum += from.lr_sum;
  into.seconds += from.seconds;
  // A re-plan may change the depth: a stage missing on one side adds nothing.
  if (into.stage_compute.size() < from.stage_compute.size())
    into.stage_compute.resize(from.stage_compute.size(), 0.0);
  for (std::size_t k = 0; k < from.stage_compute.size(); ++k)
    into.stage_compute[k] += from.stage_compute[k];
}

/// Merges neighbours (0+1, 2+3, ...): half the points, twice the steps each.
void step_series::halve() {
  std::vector<point> merged;
  merged.reserve(points_.size() / 2 + 1);
  for (std::size_t i = 0; i < points_.size(); i += 2) {
    merged.push_back(points_[i]);
    if (i + 1 < points_.size())
      merge(merged.back(), points_[i + 1]);
  }
  points_ = std::move(merged);
  every_ *= 2;
}

void step_series::add(const step_sample& s) {
  point p{s.step, 1, s.loss_sum, s.tokens, s.correct, s.samples, s.lr, s.seconds, s.stage_compute};
  if (!points_.empty() && points_.back().steps < every_) {
    merge(points_.back(), p);
    return;
  }
  if (points_.size() == max_points_) {
    halve();
    if (points_.back().steps < every_) {
      merge(points_.back(), p);
      return;
    }
  }
  points_.push_back(std::move(p));
}

nlohmann::json step_series::to_json(bool accuracy) const {
  auto steps = nlohmann::json::array();
  auto loss = nlohmann::json::array();
  auto acc = nlohmann::json::array();
  auto lr = nlohmann::json::array();
  auto rate = nlohmann::json::array();
  std::size_t depth = 0;
  for (const auto& p : points_)
    depth = std::max(depth, p.stage_compute.size());
  std::vector<nlohmann::json> busy(depth, nlohmann::json::array());
  for (const auto& p : points_) {
    steps.push_back(p.step);
    loss.push_back(ratio(p.loss_sum, static_cast<double>(p.tokens)));
    acc.push_back(ratio(static_cast<double>(p.correct), static_cast<double>(p.samples)));
    lr.push_back(ratio(p.lr_sum, static_cast<double>(p.steps)));
    rate.push_back(ratio(static_cast<double>(p.samples), p.seconds));
    for (std::size_t k = 0; k < depth; ++k)
      busy[k].push_back(k < p.stage_compute.size()
                            ? std::clamp(ratio(p.stage_compute[k], p.seconds), 0.0, 1.0)
                            : 0.0);
  }
  nlohmann::json j{
      {"every", every_}, {"max_points", max_points_},  {"step", steps},     {"loss", loss},
      {"lr", lr},        {"samples_per_second", rate}, {"stage_busy", busy}};
  if (accuracy)
    j["train_accuracy"] = acc;
  return j;
}

} // namespace troupe::actors::training
