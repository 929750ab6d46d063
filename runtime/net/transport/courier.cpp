#include "runtime/net/transport/courier.hpp"

#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <stdexcept>
#include <utility>

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/node_id.hpp>

#include "runtime/log.hpp"
#include "runtime/net/system_config.hpp"
#include "runtime/net/transport/transfer_table.hpp"

namespace troupe::runtime::transport {

namespace {

using failure_handler = std::function<void(const std::string& peer, const std::string& reason)>;

/// A transport_counters that many threads add to.
struct atomic_counters {
  std::atomic<std::uint64_t> messages{0};
  std::atomic<std::uint64_t> bytes{0};

  void add(std::uint64_t n) {
    messages.fetch_add(1, std::memory_order_relaxed);
    bytes.fetch_add(n, std::memory_order_relaxed);
  }
  transport_counters get() const {
    return {messages.load(std::memory_order_relaxed), bytes.load(std::memory_order_relaxed)};
  }
};

/// Where messages for one remote process go: its data-plane name and the
/// courier actor that receives its descriptors.
struct route {
  std::string peer;
  caf::actor endpoint;
  std::string host; ///< where its data plane listens (to connect again)
  std::uint16_t port = 0;
};

/// A data-plane frame whose transfer id has this bit carries the descriptor
/// of transfer (id & ~descriptor_bit) instead of a payload: the descriptor
/// travels on the payload's own connection, just before it, and the io thread
/// that reads both hands the message over. Sending it through CAF instead
/// took the middleman's thread on both sides and the courier actor, a
/// thread hand-off each, per message (the CAF path still works: peers and
/// tests may use it).
constexpr std::uint64_t descriptor_bit = std::uint64_t{1} << 63;
/// Descriptors are small (ids, a name, an actor handle, a shape, the
/// message's scalar fields); anything larger is a misbehaving peer.
constexpr std::size_t max_descriptor_bytes = 64 * 1024;

} // namespace

class courier::impl : public std::enable_shared_from_this<courier::impl> {
public:
  impl(caf::actor_system& sys, courier_options opts)
      : sys_(sys), opts_(std::move(opts)), messages_(tensor_messages(sys)), log_(logger("courier")),
        table_(opts_.max_unmatched_bytes) {}

  ~impl() { stop(); }

  void start(const std::string& host, std::uint16_t port);
  void stop();

  std::optional<data_route> route_for(const caf::actor& dest, const tensor& data);
  bool ship(const tensor_message_type& type, const data_route& r, const caf::actor& dest,
            transfer_header& d, tensor payload, std::uint64_t job);
  void on_descriptor(incoming_transfer& t);
  /// A descriptor frame from the data plane (io thread).
  void on_descriptor_frame(const std::string& peer, std::uint64_t id, const tensor& blob);
  void on_payload(const std::string& peer, std::uint64_t id, tensor payload);
  void on_peer_up(const std::string& peer);
  void on_peer_down(const std::string& peer, const std::string& reason, bool orderly);
  /// One attempt to connect again to a registered peer whose connection was
  /// lost (not after an orderly close: that process is shutting down).
  void reconnect(const std::string& peer);
  /// Whether `job` ended here (end_job); guarded by table_mtx_.
  bool ended(std::uint64_t job) const { return job != 0 && ended_jobs_.count(job) > 0; }
  /// Delivers a completed pair or reports what went wrong.
  void finish(const std::string& peer, transfer_table::outcome out);
  void fail(const std::string& peer, const std::string& reason);
  /// The route to the process `node` when its data plane is up.
  std::optional<route> route_to(const caf::node_id& node) const;

  caf::actor_system& sys_;
  const courier_options opts_;
  const std::shared_ptr<const tensor_message_registry> messages_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<data_plane> dp_;
  std::uint16_t port_ = 0;
  caf::actor endpoint_;
  std::atomic<std::uint64_t> last_id_{0};
  std::atomic<bool> stopped_{false};
  atomic_counters caf_;
  atomic_counters dataplane_;

  mutable std::mutex routes_mtx_;        // guards routes_, up_
  std::map<caf::node_id, route> routes_; ///< by the node of the peer's endpoint
  std::set<std::string> up_;             ///< data-plane peers connected now

  mutable std::mutex table_mtx_; // guards table_, ended_jobs_, ended_order_
  transfer_table table_;
  std::set<std::uint64_t> ended_jobs_;
  std::deque<std::uint64_t> ended_order_; ///< oldest first, to forget beyond a bound
  std::atomic<std::uint64_t> late_{0};

  std::mutex handler_mtx_; // guards handler_
  failure_handler handler_;
};

namespace {

/// The courier actor: hands each descriptor of a registered tensor message
/// to the courier, while it lives.
caf::behavior courier_actor(caf::event_based_actor*, std::weak_ptr<courier::impl> c,
                            std::shared_ptr<const tensor_message_registry> messages) {
  return messages->descriptor_handler([c](incoming_transfer& t) {
    if (auto p = c.lock())
      p->on_descriptor(t);
  });
}

} // namespace

void courier::impl::start(const std::string& host, std::uint16_t port) {
  data_plane_options o;
  o.name = opts_.name;
  o.key = opts_.key;
  o.insecure_plain_loopback = opts_.insecure_plain_loopback;
  o.max_payload_bytes = opts_.max_payload_bytes;
  // The data plane is stopped (its io thread joined) before this is destroyed.
  data_plane_callbacks cb;
  cb.on_receive = [this](const std::string& peer, std::uint64_t id, tensor value) {
    on_payload(peer, id, std::move(value));
  };
  cb.on_peer_up = [this](const std::string& peer) { on_peer_up(peer); };
  cb.on_peer_down = [this](const std::string& peer, const std::string& reason, bool orderly) {
    on_peer_down(peer, reason, orderly);
  };
  dp_ = std::make_unique<data_plane>(std::move(o), std::move(cb));
  port_ = dp_->listen(host, port);
  endpoint_ = sys_.spawn(courier_actor, weak_from_this(), messages_);
}

void courier::impl::stop() {
  if (stopped_.exchange(true))
    return;
  {
    std::lock_guard<std::mutex> g{routes_mtx_};
    routes_.clear();
    up_.clear();
  }
  if (dp_)
    dp_->stop();
  if (endpoint_)
    caf::anon_send_exit(endpoint_, caf::exit_reason::user_shutdown);
  std::map<std::string, std::size_t> dropped;
  {
    std::lock_guard<std::mutex> g{table_mtx_};
    dropped = table_.clear();
  }
  for (const auto& [peer, n] : dropped)
    fail(peer, "courier '" + opts_.name + "' stopped with " + std::to_string(n) +
                   " unmatched transfer(s) from this peer");
}

std::optional<courier::data_route> courier::impl::route_for(const caf::actor& dest,
                                                            const tensor& data) {
  const auto n = data.defined() ? data.nbytes() : 0;
  std::optional<data_route> out;
  if (n > opts_.threshold_bytes && dest && data.where().is_cpu() && dest.node() != sys_.node())
    if (auto r = route_to(dest.node()))
      out = data_route{std::move(r->peer), std::move(r->endpoint)};
  (out ? dataplane_ : caf_).add(n);
  return out;
}

bool courier::impl::ship(const tensor_message_type& type, const data_route& r,
                         const caf::actor& dest, transfer_header& d, tensor payload,
                         std::uint64_t job) {
  d.transfer_id = ++last_id_;
  d.sender = opts_.name;
  d.job = job;
  d.dest = dest;
  d.type = static_cast<std::uint8_t>(payload.type());
  d.shape = payload.shape();
  // The descriptor first, on the same connection (see descriptor_bit).
  std::vector<char> buf{static_cast<char>(type.tag)};
  if (auto err = type.encode(sys_, d, buf)) { // not expected; CAF can still carry it
    log_->warn("courier '{}': descriptor of transfer {} goes through CAF: {}", opts_.name,
               d.transfer_id, sys_.render(err));
    dp_->send(r.peer, d.transfer_id, std::move(payload));
    return false;
  }
  auto blob = tensor::empty(dtype::u8, {static_cast<std::int64_t>(buf.size())});
  std::memcpy(blob.mutable_raw_data(), buf.data(), buf.size());
  // No completion callbacks: the data plane posts every callback to its io
  // thread (a wake-up and a lock on its queue per message, contended with
  // the io thread's own work), and a send fails only with its connection,
  // which on_peer_down reports (fail() below).
  // Both frames in one write: the receiver's io thread wakes once for them.
  std::vector<data_plane::frame_to_send> frames(2);
  frames[0] = {d.transfer_id | descriptor_bit, std::move(blob)};
  frames[1] = {d.transfer_id, std::move(payload)};
  dp_->send_all(r.peer, std::move(frames));
  return true;
}

void courier::impl::on_descriptor_frame(const std::string& peer, std::uint64_t id,
                                        const tensor& blob) {
  if (blob.type() != dtype::u8 || blob.nbytes() < 1 || blob.nbytes() > max_descriptor_bytes)
    return fail(peer, "descriptor frame of transfer " + std::to_string(id) + " has " +
                          std::to_string(blob.nbytes()) + " bytes");
  const auto* type = messages_->by_tag(*blob.data<std::uint8_t>());
  if (!type)
    return fail(peer, "descriptor frame of transfer " + std::to_string(id) + " has an unknown tag");
  incoming_transfer t;
  if (auto err =
          type->decode(sys_, static_cast<const char*>(blob.raw_data()) + 1, blob.nbytes() - 1, t))
    return fail(peer, "descriptor frame of transfer " + std::to_string(id) +
                          " does not decode: " + sys_.render(err));
  // The authenticated connection names the sender; the destination must
  // live here (a handle to an actor elsewhere is never a valid target). A
  // handle to a local actor that has exited decodes as null: a late message
  // of an ended job, which on_descriptor drops.
  const auto& d = t.head;
  if (d.transfer_id != id || d.sender != peer || (d.dest && d.dest.node() != sys_.node()))
    return fail(peer, "descriptor frame of transfer " + std::to_string(id) +
                          " names another transfer, sender or process");
  on_descriptor(t);
}

void courier::impl::on_descriptor(incoming_transfer& t) {
  if (stopped_)
    return; // its payload cannot come any more; stop() reported what was pending
  auto& d = t.head;
  auto type = dtype_from_wire(d.type);
  if (!type || d.shape.size() > max_wire_rank)
    return fail(d.sender, "descriptor of transfer " + std::to_string(d.transfer_id) +
                              " has a bad dtype or rank");
  transfer_table::outcome out;
  {
    std::lock_guard<std::mutex> g{table_mtx_};
    if (!d.dest || ended(d.job)) {
      // Late: its job ended here or its actor is gone. The payload is still
      // paired (by this transfer's own id, unique per sender) and dropped.
      t.deliver = [this, id = d.transfer_id, sender = d.sender, job = d.job](tensor) {
        late_.fetch_add(1, std::memory_order_relaxed);
        log_->debug("courier '{}': dropped late transfer {} from '{}' (job {})", opts_.name, id,
                    sender, job);
      };
    }
    out = table_.add_descriptor(d.sender, d.transfer_id, *type, std::move(d.shape),
                                std::move(t.deliver));
  }
  finish(d.sender, std::move(out));
}

void courier::impl::on_payload(const std::string& peer, std::uint64_t id, tensor payload) {
  if ((id & descriptor_bit) != 0)
    return on_descriptor_frame(peer, id & ~descriptor_bit, payload);
  transfer_table::outcome out;
  {
    std::lock_guard<std::mutex> g{table_mtx_};
    out = table_.add_payload(peer, id, std::move(payload));
  }
  finish(peer, std::move(out));
}

void courier::impl::finish(const std::string& peer, transfer_table::outcome out) {
  if (out.deliver)
    out.deliver(std::move(out.payload));
  else if (out.error)
    fail(peer, *out.error);
  else if (out.discarded)
    log_->debug("courier '{}': discarded a late half of a transfer from '{}' (peer down)",
                opts_.name, peer);
}

void courier::impl::on_peer_up(const std::string& peer) {
  {
    std::lock_guard<std::mutex> g{table_mtx_};
    table_.open_peer(peer);
  }
  std::lock_guard<std::mutex> g{routes_mtx_};
  up_.insert(peer);
}

void courier::impl::on_peer_down(const std::string& peer, const std::string& reason, bool orderly) {
  {
    std::lock_guard<std::mutex> g{routes_mtx_};
    up_.erase(peer);
  }
  std::size_t dropped = 0;
  {
    std::lock_guard<std::mutex> g{table_mtx_};
    dropped = table_.drop_peer(peer);
  }
  if (orderly && dropped == 0) { // a process shutting down: nothing was lost
    log_->info("courier '{}': peer '{}' closed its data-plane connection ({})", opts_.name, peer,
               reason);
    return;
  }
  fail(peer, "data-plane connection lost: " + reason + " (" + std::to_string(dropped) +
                 " unmatched transfer(s) dropped)");
  reconnect(peer);
}

void courier::impl::reconnect(const std::string& peer) {
  std::optional<route> r;
  {
    std::lock_guard<std::mutex> g{routes_mtx_};
    for (const auto& [node, candidate] : routes_)
      if (candidate.peer == peer && candidate.port != 0)
        r = candidate;
  }
  if (!r || stopped_)
    return;
  dp_->connect_async(peer, r->host, r->port,
                     [log = log_, me = opts_.name, peer](std::optional<std::string> err) {
                       if (err)
                         log->info("courier '{}': peer '{}' not reconnected ({}); its messages "
                                   "travel through CAF",
                                   me, peer, *err);
                       else
                         log->info("courier '{}': data plane to '{}' rebuilt", me, peer);
                     });
}

void courier::impl::fail(const std::string& peer, const std::string& reason) {
  log_->warn("courier '{}': peer '{}': {}", opts_.name, peer, reason);
  failure_handler h;
  {
    std::lock_guard<std::mutex> g{handler_mtx_};
    h = handler_;
  }
  if (h)
    h(peer, reason);
}

std::optional<route> courier::impl::route_to(const caf::node_id& node) const {
  std::lock_guard<std::mutex> g{routes_mtx_};
  auto it = routes_.find(node);
  if (it == routes_.end() || up_.count(it->second.peer) == 0)
    return std::nullopt;
  return it->second;
}

// ------------------------------------------------------------------ courier

courier::courier(std::shared_ptr<impl> p, std::uint64_t job, bool owner)
    : impl_(std::move(p)), job_(job), owner_(owner) {}

courier::~courier() {
  if (!owner_)
    return;
  try {
    stop();
  } catch (const std::exception& e) {
    impl_->log_->error("courier '{}': stop: {}", impl_->opts_.name, e.what());
  }
}

std::shared_ptr<courier> courier::start(caf::actor_system& sys, courier_options opts,
                                        const std::string& listen_host, std::uint16_t port) {
  auto p = std::make_shared<impl>(sys, std::move(opts));
  p->start(listen_host, port);
  return std::shared_ptr<courier>(new courier(std::move(p), 0, true));
}

std::shared_ptr<courier> courier::for_job(std::uint64_t job) const {
  return std::shared_ptr<courier>(new courier(impl_, job, false));
}

void courier::end_job(std::uint64_t job) {
  constexpr std::size_t remembered = 1024;
  std::lock_guard<std::mutex> g{impl_->table_mtx_};
  if (job == 0 || !impl_->ended_jobs_.insert(job).second)
    return;
  impl_->ended_order_.push_back(job);
  if (impl_->ended_order_.size() > remembered) {
    impl_->ended_jobs_.erase(impl_->ended_order_.front());
    impl_->ended_order_.pop_front();
  }
}

std::uint64_t courier::late_transfers() const {
  return impl_->late_.load(std::memory_order_relaxed);
}

std::uint16_t courier::port() const {
  return impl_->port_;
}

const std::string& courier::name() const {
  return impl_->opts_.name;
}

caf::actor courier::endpoint() const {
  return impl_->endpoint_;
}

void courier::add_peer(const std::string& name, const std::string& host, std::uint16_t port,
                       caf::actor peer_endpoint,
                       std::function<void(std::optional<std::string>)> done) {
  if (!peer_endpoint)
    throw std::invalid_argument("courier::add_peer: no endpoint actor for peer '" + name + "'");
  auto node = peer_endpoint.node();
  {
    std::lock_guard<std::mutex> g{impl_->routes_mtx_};
    impl_->routes_[node] = route{name, std::move(peer_endpoint), host, port};
  }
  impl_->dp_->connect_async(name, host, port, std::move(done));
}

void courier::on_failure(
    std::function<void(const std::string& peer, const std::string& reason)> handler) {
  std::lock_guard<std::mutex> g{impl_->handler_mtx_};
  impl_->handler_ = std::move(handler);
}

const tensor_message_registry& courier::messages() const {
  return *impl_->messages_;
}

std::optional<courier::data_route> courier::route_for(const caf::actor& dest, const tensor& data) {
  return impl_->route_for(dest, data);
}

bool courier::ship(const tensor_message_type& type, const data_route& r, const caf::actor& dest,
                   transfer_header& d, tensor payload) {
  return impl_->ship(type, r, dest, d, std::move(payload), job_);
}

transport_counters courier::caf_counters() const {
  return impl_->caf_.get();
}

transport_counters courier::dataplane_counters() const {
  return impl_->dataplane_.get();
}

std::map<std::string, transport::peer_counters> courier::peer_counters() const {
  return impl_->dp_->counters();
}

std::size_t courier::unmatched_transfers() const {
  std::lock_guard<std::mutex> g{impl_->table_mtx_};
  return impl_->table_.unmatched();
}

void courier::cut_peer(const std::string& peer) {
  impl_->dp_->cut(peer);
}

void courier::stop() {
  if (owner_)
    impl_->stop();
}

} // namespace troupe::runtime::transport
