#include "actors/collectives/collective_mesh.hpp"

#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/protocol/messages.hpp"

namespace troupe::actors {

namespace {

/// (mesh_get_atom) -> (int32 rank, string courier name, vector<actor> ranks, actor endpoint)
using mesh_get_atom = caf::atom_constant<caf::atom("meshget")>;
/// (mesh_hello_atom, int32 rank, string courier name, vector<actor> ranks, actor endpoint) -> bool
using mesh_hello_atom = caf::atom_constant<caf::atom("meshhello")>;

/// What this process knows of another one.
struct peer_info {
  std::string name; ///< its courier's data-plane name
  std::vector<caf::actor> ranks;
  caf::actor endpoint;
};

} // namespace

/// The peers that introduced themselves (higher ranks), shared by the
/// directory actor (writer) and connect() (reader, waits on cv).
struct collective_mesh::directory_state {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::optional<peer_info>> peers;
};

namespace {

caf::behavior directory_actor(caf::event_based_actor*,
                              std::shared_ptr<collective_mesh::directory_state> st,
                              std::int32_t rank, std::string name, std::vector<caf::actor> ranks,
                              caf::actor endpoint) {
  return {
      [=](mesh_get_atom) { return std::make_tuple(rank, name, ranks, endpoint); },
      [=](mesh_hello_atom, std::int32_t from, std::string& peer_name,
          std::vector<caf::actor>& peer_ranks, caf::actor& peer_endpoint) -> caf::result<bool> {
        std::lock_guard<std::mutex> g{st->mtx};
        if (from <= rank || static_cast<std::size_t>(from) >= st->peers.size() ||
            peer_ranks.size() != ranks.size() || !peer_endpoint)
          return caf::make_error(caf::sec::invalid_argument,
                                 "collective mesh rank " + std::to_string(rank) +
                                     ": bad introduction from rank " + std::to_string(from));
        st->peers[static_cast<std::size_t>(from)] =
            peer_info{std::move(peer_name), std::move(peer_ranks), std::move(peer_endpoint)};
        st->cv.notify_all();
        return true;
      },
  };
}

[[noreturn]] void fail(int rank, const std::string& what) {
  throw std::runtime_error("collective mesh rank " + std::to_string(rank) + ": " + what);
}

} // namespace

collective_mesh::collective_mesh(caf::actor_system& sys, int rank, int size,
                                 std::vector<collective_config> groups,
                                 runtime::transport::courier_options opts, const std::string& host)
    : sys_(sys), rank_(rank), size_(size), host_(host),
      peers_(std::make_shared<directory_state>()) {
  if (size < 1 || rank < 0 || rank >= size)
    throw std::invalid_argument("collective mesh: rank " + std::to_string(rank) + " of " +
                                std::to_string(size));
  if (groups.empty())
    throw std::invalid_argument("collective mesh: no group");
  peers_->peers.resize(static_cast<std::size_t>(size));
  courier_ = runtime::transport::courier::start(sys, std::move(opts), host);
  try {
    for (auto& g : groups) {
      g.rank = rank;
      g.size = size;
      g.courier = courier_;
      ranks_.push_back(spawn_collective_rank(sys, g));
    }
    directory_ = sys.spawn(directory_actor, peers_, static_cast<std::int32_t>(rank),
                           courier_->name(), ranks_, courier_->endpoint());
    auto port = sys.middleman().publish(directory_, 0, host.c_str(), true);
    if (!port)
      fail(rank, "cannot publish its directory on " + host + ": " + sys.render(port.error()));
    caf_port_ = *port;
  } catch (...) {
    stop();
    throw;
  }
}

collective_mesh::~collective_mesh() {
  stop();
}

mesh_address collective_mesh::address() const {
  return {host_, caf_port_, courier_->port()};
}

void collective_mesh::connect(const std::vector<mesh_address>& all,
                              std::chrono::milliseconds timeout) {
  if (static_cast<int>(all.size()) != size_)
    throw std::invalid_argument("collective mesh: " + std::to_string(all.size()) +
                                " addresses for " + std::to_string(size_) + " ranks");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return std::max(std::chrono::milliseconds{1},
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now()));
  };
  caf::scoped_actor self{sys_};
  std::vector<peer_info> peers(static_cast<std::size_t>(size_));
  // Dial every lower rank, fetch its handles, introduce this one.
  for (int j = 0; j < rank_; ++j) {
    const auto& a = all[static_cast<std::size_t>(j)];
    auto dir = sys_.middleman().remote_actor(a.host, a.caf_port);
    if (!dir)
      fail(rank_, "cannot reach rank " + std::to_string(j) + " at " + a.host + ":" +
                      std::to_string(a.caf_port) + ": " + sys_.render(dir.error()));
    std::string err;
    auto& p = peers[static_cast<std::size_t>(j)];
    self->request(*dir, left(), mesh_get_atom::value)
        .receive(
            [&](std::int32_t r, std::string& name, std::vector<caf::actor>& ranks, caf::actor& ep) {
              if (r != j || ranks.size() != ranks_.size() || !ep)
                err = "the process at that address is not rank " + std::to_string(j) +
                      " of a matching mesh";
              p = peer_info{std::move(name), std::move(ranks), std::move(ep)};
            },
            [&](caf::error& e) { err = sys_.render(e); });
    if (err.empty())
      self->request(*dir, left(), mesh_hello_atom::value, static_cast<std::int32_t>(rank_),
                    courier_->name(), ranks_, courier_->endpoint())
          .receive([](bool) {}, [&](caf::error& e) { err = sys_.render(e); });
    if (!err.empty())
      fail(rank_, "rank " + std::to_string(j) + ": " + err);
  }
  // Wait for every higher rank's introduction.
  {
    std::unique_lock<std::mutex> g{peers_->mtx};
    for (int j = rank_ + 1; j < size_; ++j) {
      auto& slot = peers_->peers[static_cast<std::size_t>(j)];
      if (!peers_->cv.wait_until(g, deadline, [&] { return slot.has_value(); }))
        fail(rank_, "rank " + std::to_string(j) + " did not connect within " +
                        std::to_string(timeout.count()) + " ms");
      peers[static_cast<std::size_t>(j)] = *slot;
    }
  }
  // Data plane to everyone (both sides dial; the data plane keeps one).
  std::vector<std::pair<int, std::future<std::optional<std::string>>>> ups;
  for (int j = 0; j < size_; ++j) {
    if (j == rank_)
      continue;
    const auto& p = peers[static_cast<std::size_t>(j)];
    const auto& a = all[static_cast<std::size_t>(j)];
    auto done = std::make_shared<std::promise<std::optional<std::string>>>();
    ups.emplace_back(j, done->get_future());
    courier_->add_peer(p.name, a.host, a.data_port, p.endpoint,
                       [done](std::optional<std::string> e) { done->set_value(std::move(e)); });
  }
  for (auto& [j, f] : ups) {
    if (f.wait_until(deadline) != std::future_status::ready)
      fail(rank_, "data plane to rank " + std::to_string(j) + " not up within " +
                      std::to_string(timeout.count()) + " ms");
    if (auto e = f.get())
      fail(rank_, "data plane to rank " + std::to_string(j) + ": " + *e);
  }
  // Wire every group.
  for (std::size_t g = 0; g < ranks_.size(); ++g) {
    std::vector<caf::actor> members(static_cast<std::size_t>(size_));
    for (int j = 0; j < size_; ++j)
      members[static_cast<std::size_t>(j)] =
          j == rank_ ? ranks_[g] : peers[static_cast<std::size_t>(j)].ranks[g];
    std::string err;
    self->request(ranks_[g], left(), actors::wire_atom::value, std::move(members))
        .receive([] {}, [&](caf::error& e) { err = sys_.render(e); });
    if (!err.empty())
      fail(rank_, "wiring group " + std::to_string(g) + ": " + err);
  }
}

void collective_mesh::stop() {
  if (stopped_)
    return;
  stopped_ = true;
  for (auto& r : ranks_)
    caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  if (directory_)
    caf::anon_send_exit(directory_, caf::exit_reason::user_shutdown);
  if (courier_)
    courier_->stop();
}

} // namespace troupe::actors
