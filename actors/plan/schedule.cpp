#include "actors/plan/schedule.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "runtime/error.hpp"

namespace troupe::actors {

std::string_view to_string(schedule_kind k) {
  switch (k) {
  case schedule_kind::gpipe:
    return "gpipe";
  case schedule_kind::one_f_one_b:
    return "1f1b";
  case schedule_kind::interleaved:
    return "interleaved";
  case schedule_kind::zb1:
    return "zb1";
  case schedule_kind::zbv:
    return "zbv";
  }
  return "?";
}

schedule_kind parse_schedule_kind(std::string_view s) {
  if (s == "gpipe")
    return schedule_kind::gpipe;
  if (s == "1f1b")
    return schedule_kind::one_f_one_b;
  if (s == "interleaved")
    return schedule_kind::interleaved;
  if (s == "zb1")
    return schedule_kind::zb1;
  if (s == "zbv")
    return schedule_kind::zbv;
  throw runtime::input_error("unknown schedule '" + std::string{s} +
                             "' (known: gpipe, 1f1b, interleaved, zb1, zbv)");
}

bool splits_backward(schedule_kind k) {
  return k == schedule_kind::zb1 || k == schedule_kind::zbv;
}

chunk_layout layout_of(schedule_kind k) {
  return k == schedule_kind::zbv ? chunk_layout::v_shape : chunk_layout::looped;
}

int virtual_stage(chunk_layout l, int stages, int stage, int chunk) {
  if (l == chunk_layout::v_shape)
    return chunk == 0 ? stage : 2 * stages - 1 - stage;
  return chunk * stages + stage;
}

stage_position position_of(chunk_layout l, int stages, int virtual_stage) {
  if (l == chunk_layout::v_shape)
    return virtual_stage < stages ? stage_position{virtual_stage, 0}
                                  : stage_position{2 * stages - 1 - virtual_stage, 1};
  return {virtual_stage % stages, virtual_stage / stages};
}

int loss_stage(schedule_kind k, int stages) {
  return layout_of(k) == chunk_layout::v_shape ? 0 : stages - 1;
}

int chunks_for(schedule_kind k, int virtual_stages) {
  return k == schedule_kind::zbv ? 2 : virtual_stages;
}

namespace {

/// The (micro-batch, chunk) order of every device's forwards in the
/// interleaved schedule: groups of `stages` micro-batches (the last one may be
/// smaller), each group through every chunk in turn; the same on every device.
std::vector<std::pair<int, int>> interleaved_order(int stages, int microbatches,
                                                   int virtual_stages) {
  std::vector<std::pair<int, int>> r;
  r.reserve(static_cast<std::size_t>(microbatches * virtual_stages));
  for (int first = 0; first < microbatches; first += stages) {
    int end = std::min(first + stages, microbatches);
    for (int v = 0; v < virtual_stages; ++v)
      for (int m = first; m < end; ++m)
        r.emplace_back(m, v);
  }
  return r;
}

/// PipeDream-flush over `order`: `warmup` forwards, then one forward and one
/// backward in turn, then the remaining backwards. Forward k runs order[k]
/// through its chunk; backward k runs the same micro-batch through the
/// mirrored chunk (the backward pass walks the chunks in reverse).
std::vector<action> one_f_one_b(const std::vector<std::pair<int, int>>& order, int warmup,
                                int virtual_stages) {
  const int total = static_cast<int>(order.size());
  auto at = [&](int k) { return order[static_cast<std::size_t>(k)]; };
  std::vector<action> r;
  r.reserve(static_cast<std::size_t>(2 * total));
  auto fwd = [&](int k) { r.push_back({action::kind::forward, at(k).first, at(k).second}); };
  auto bwd = [&](int k) {
    r.push_back({action::kind::backward, at(k).first, virtual_stages - 1 - at(k).second});
  };
  int next_f = 0, next_b = 0;
  for (; next_f < warmup; ++next_f)
    fwd(next_f);
  while (next_f < total) {
    fwd(next_f++);
    bwd(next_b++);
  }
  while (next_b < total)
    bwd(next_b++);
  return r;
}

/// Megatron's schedule for a multiple of `stages` micro-batches. For any
/// other count it is the schedule of the next multiple with the missing
/// micro-batches left out: dropping every action of some micro-batches from a
/// deadlock-free schedule keeps it deadlock-free (the remaining actions only
/// depend on actions of their own micro-batch, in an order that already
/// worked), and never raises a device's peak. Megatron's own formula run on a
/// short last group deadlocks (e.g. 4 devices, 4 chunks, 5 micro-batches:
/// device 0 needs the last device's chunk-1 output sooner than the warm-up
/// lets it come); the simulator in the tests finds such cases.
std::vector<action> interleaved_schedule(int stages, int stage, int microbatches,
                                         int virtual_stages) {
  const int padded = (microbatches + stages - 1) / stages * stages;
  auto order = interleaved_order(stages, padded, virtual_stages);
  // Megatron: the chunk-v output of the last device has to come round to
  // device 0 before it can run chunk v + 1, hence the doubled depth term.
  const int warmup = std::min(static_cast<int>(order.size()),
                              (stages - stage - 1) * 2 + (virtual_stages - 1) * stages);
  auto r = one_f_one_b(order, warmup, virtual_stages);
  std::erase_if(r, [&](const action& a) { return a.mb >= microbatches; });
  return r;
}

/// ZB-H1: 1f1b's forwards and backwards (input gradients only); after each
/// backward the oldest W runs once more than `stage` are pending, the rest at
/// the end. Deferring W's on the devices that would wait in the cool-down
/// lets the input gradients reach device 0 sooner; the memory a deferred W
/// keeps is paid back by device d's shorter warm-up (it peaks at P as device
/// 0 does, or at M when fewer).
std::vector<action> zb1_schedule(int stages, int stage, int microbatches) {
  std::vector<action> r;
  r.reserve(static_cast<std::size_t>(3 * microbatches));
  int next_f = 0, next_b = 0, next_w = 0;
  auto fwd = [&] { r.push_back({action::kind::forward, next_f++, 0}); };
  auto bwd = [&] {
    r.push_back({action::kind::backward, next_b++, 0});
    if (next_b - next_w > stage)
      r.push_back({action::kind::weight, next_w++, 0});
  };
  for (const int warmup = std::min(stages - stage - 1, microbatches); next_f < warmup;)
    fwd();
  while (next_f < microbatches) {
    fwd();
    bwd();
  }
  while (next_b < microbatches)
    bwd();
  while (next_w < microbatches)
    r.push_back({action::kind::weight, next_w++, 0});
  return r;
}

/// ZB-V (PyTorch's ScheduleZBVZeroBubble has the same shape) over
/// `n` >= 2P - 1 micro-batches. Chunk 0 is virtual stage `stage`, chunk 1
/// virtual stage 2P - 1 - stage, so device 0 computes the loss.
std::vector<action> zbv_padded(int stages, int stage, int n) {
  std::vector<action> r;
  r.reserve(static_cast<std::size_t>(6 * n));
  int f[2] = {0, 0}, b[2] = {0, 0}, w[2] = {0, 0};
  auto fwd = [&](int c) { r.push_back({action::kind::forward, f[c]++, c}); };
  auto bwd = [&](int c) { r.push_back({action::kind::backward, b[c]++, c}); };
  auto wgt = [&](int c) { r.push_back({action::kind::weight, w[c]++, c}); };
  // Warm-up: chunk 0 until the first micro-batch comes back up to this
  // device's chunk 1, then both chunks, then the first chunk-1 backwards.
  for (int i = 0; i < 2 * (stages - stage) - 1; ++i)
    fwd(0);
  for (int i = 0; i < stage; ++i) {
    fwd(1);
    fwd(0);
  }
  for (int i = 0; i < stages - stage; ++i) {
    fwd(1);
    bwd(1);
    wgt(1);
  }
  // Steady state: F B W on chunk 0, then on chunk 1.
  while (f[1] < f[0] || f[0] < n) {
    if (f[0] < n)
      fwd(0);
    bwd(0);
    wgt(0);
    fwd(1);
    bwd(1);
    wgt(1);
  }
  // Cool-down: the backwards first, the W's where a device would wait.
  for (int i = 0; i < stage; ++i) {
    bwd(0);
    bwd(1);
  }
  for (int i = 0; i < stages - stage; ++i) {
    bwd(0);
    wgt(0);
  }
  while (w[1] < b[1])
    wgt(1);
  while (w[0] < b[0])
    wgt(0);
  return r;
}

} // namespace

std::vector<action> make_schedule(schedule_kind k, int stages, int stage, int microbatches,
                                  int virtual_stages) {
  if (stages < 1 || stage < 0 || stage >= stages || microbatches < 1 || virtual_stages < 1)
    throw std::invalid_argument(
        "make_schedule: need 0 <= stage < stages, microbatches >= 1 and virtual_stages >= 1");
  if (k == schedule_kind::zbv) {
    if (virtual_stages != 2)
      throw std::invalid_argument("make_schedule: zbv needs virtual_stages == 2");
    // As interleaved: the schedule of enough micro-batches to fill the V,
    // those beyond `microbatches` left out (deadlock-free, no higher peak).
    auto r = zbv_padded(stages, stage, std::max(microbatches, 2 * stages - 1));
    std::erase_if(r, [&](const action& a) { return a.mb >= microbatches; });
    return r;
  }
  if (virtual_stages > 1 && k != schedule_kind::interleaved)
    throw std::invalid_argument("make_schedule: virtual stages need the interleaved schedule");
  if (k == schedule_kind::zb1)
    return zb1_schedule(stages, stage, microbatches);
  if (k == schedule_kind::interleaved && virtual_stages > 1)
    return interleaved_schedule(stages, stage, microbatches, virtual_stages);
  if (k == schedule_kind::gpipe) {
    std::vector<action> r;
    r.reserve(static_cast<std::size_t>(2 * microbatches));
    for (int m = 0; m < microbatches; ++m)
      r.push_back({action::kind::forward, m});
    // Backwards in micro-batch order, as in every other schedule (and
    // PyTorch's ScheduleGPipe): each layer then adds its micro-batch
    // gradients in the same order whatever the schedule, so results do not
    // depend on it, bit for bit.
    for (int m = 0; m < microbatches; ++m)
      r.push_back({action::kind::backward, m});
    return r;
  }
  return one_f_one_b(interleaved_order(stages, microbatches, 1),
                     std::min(stages - stage - 1, microbatches), 1);
}

std::vector<action> forward_only_schedule(int microbatches, int stages, int virtual_stages) {
  std::vector<action> r;
  for (auto [m, v] : interleaved_order(std::max(1, stages), microbatches, virtual_stages))
    r.push_back({action::kind::forward, m, v});
  return r;
}

std::string to_string(const std::vector<action>& actions) {
  const bool chunks =
      std::any_of(actions.begin(), actions.end(), [](const action& a) { return a.chunk != 0; });
  std::string s;
  for (const auto& a : actions) {
    if (!s.empty())
      s += ' ';
    s += a.what == action::kind::forward ? 'F' : a.what == action::kind::backward ? 'B' : 'W';
    s += std::to_string(a.mb);
    if (chunks) {
      s += '.';
      s += std::to_string(a.chunk);
    }
  }
  return s;
}

int peak_in_flight(const std::vector<action>& actions) {
  const bool split = std::any_of(actions.begin(), actions.end(),
                                 [](const action& a) { return a.what == action::kind::weight; });
  const auto frees = split ? action::kind::weight : action::kind::backward;
  int cur = 0, peak = 0;
  for (const auto& a : actions) {
    if (a.what == action::kind::forward)
      cur += 1;
    else if (a.what == frees)
      cur -= 1;
    peak = std::max(peak, cur);
  }
  return peak;
}

} // namespace troupe::actors
