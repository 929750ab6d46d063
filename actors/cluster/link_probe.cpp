#include "actors/cluster/link_probe.hpp"

#include <chrono>
#include <map>
#include <set>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/protocol/messages.hpp"
#include "runtime/net/transport/courier.hpp"

namespace troupe::actors {

namespace {

struct sink_state {
  std::set<std::int64_t> arrived;
  std::map<std::int64_t, caf::typed_response_promise<bool>> waiting;
  static inline const char* name = "link_sink";
};

caf::behavior link_sink(caf::stateful_actor<sink_state>* self) {
  return {
      [self](activation_msg& m) {
        auto& st = self->state;
        if (auto it = st.waiting.find(m.step); it != st.waiting.end()) {
          it->second.deliver(true);
          st.waiting.erase(it);
        } else {
          st.arrived.insert(m.step);
        }
      },
      [self](link_sync_atom, std::int64_t seq) -> caf::result<bool> {
        auto& st = self->state;
        if (st.arrived.erase(seq) > 0)
          return true;
        auto rp = self->make_response_promise<bool>();
        st.waiting.emplace(seq, rp);
        return rp;
      },
  };
}

} // namespace

caf::actor spawn_link_sink(caf::actor_system& sys) {
  return sys.spawn(link_sink);
}

double measure_link(caf::actor_system& sys, runtime::transport::courier& courier,
                    const caf::actor& sink, std::int64_t bytes, double min_seconds) {
  using clock = std::chrono::steady_clock;
  const auto data =
      runtime::tensor::zeros(runtime::dtype::f32, {std::max<std::int64_t>(1, bytes / 4)});
  caf::scoped_actor self{sys};
  auto send = [&](std::int64_t seq) {
    activation_msg m;
    m.step = seq;
    m.data = data; // shares the storage: no copy per transfer
    courier.send(sink, std::move(m));
  };
  // Several transfers in flight keep the node's data plane busy, as
  // training does: a quota then throttles it, which one transfer at a time
  // (mostly waiting) would not feel.
  constexpr std::int64_t in_flight = 4;
  const auto started = clock::now();
  for (std::int64_t seq = 0; seq < in_flight; ++seq)
    send(seq);
  double seconds = 0;
  std::int64_t done = 0;
  for (;; ++done) {
    bool ok = false;
    self->request(sink, std::chrono::seconds(5), link_sync_atom::value, done)
        .receive([&](bool) { ok = true; }, [&](caf::error&) {});
    if (!ok)
      return 0;
    seconds = std::chrono::duration<double>(clock::now() - started).count();
    if (done + 1 >= 4 * in_flight && seconds >= min_seconds)
      break;
    send(done + in_flight);
  }
  // The transfers still in flight arrive at the sink, which is stopped after
  // the probe; they are not counted.
  return static_cast<double>(done + 1) * static_cast<double>(data.numel() * 4) / seconds;
}

} // namespace troupe::actors
