#include "runtime/net/transport/transfer_table.hpp"

#include <utility>

namespace troupe::runtime::transport {

namespace {

std::string describe(dtype type, const shape_t& shape) {
  return std::string{to_string(type)} + to_string(shape);
}

std::string transfer_name(const std::string& peer, std::uint64_t id) {
  return "transfer " + std::to_string(id) + " from '" + peer + "'";
}

transfer_table::outcome failed(std::string error) {
  transfer_table::outcome out;
  out.error = std::move(error);
  return out;
}

transfer_table::outcome discarded() {
  transfer_table::outcome out;
  out.discarded = true;
  return out;
}

} // namespace

transfer_table::transfer_table(std::uint64_t max_unmatched_bytes)
    : max_unmatched_bytes_(max_unmatched_bytes) {}

transfer_table::outcome transfer_table::match(const std::string& peer, std::uint64_t id,
                                              expectation e, tensor payload) {
  outcome out;
  if (payload.type() != e.type || payload.shape() != e.shape) {
    out.error = transfer_name(peer, id) + ": payload " + describe(payload.type(), payload.shape()) +
                " does not match its descriptor " + describe(e.type, e.shape);
    return out;
  }
  out.deliver = std::move(e.deliver);
  out.payload = std::move(payload);
  return out;
}

transfer_table::outcome transfer_table::add_descriptor(const std::string& peer, std::uint64_t id,
                                                       dtype type, shape_t shape,
                                                       deliver_fn deliver) {
  if (down_.count(peer) != 0)
    return discarded();
  auto& p = peers_[peer];
  auto [it, inserted] = p.entries.try_emplace(id);
  if (inserted) {
    it->second.described = expectation{type, std::move(shape), std::move(deliver)};
    return {};
  }
  if (it->second.described)
    return failed(transfer_name(peer, id) + ": duplicate descriptor");
  auto payload = std::move(it->second.payload);
  p.payload_bytes -= payload.nbytes();
  p.entries.erase(it);
  return match(peer, id, expectation{type, std::move(shape), std::move(deliver)},
               std::move(payload));
}

transfer_table::outcome transfer_table::add_payload(const std::string& peer, std::uint64_t id,
                                                    tensor payload) {
  if (down_.count(peer) != 0)
    return discarded();
  auto& p = peers_[peer];
  if (auto it = p.entries.find(id); it != p.entries.end()) {
    if (!it->second.described)
      return failed(transfer_name(peer, id) + ": duplicate payload");
    auto e = std::move(*it->second.described);
    p.entries.erase(it);
    return match(peer, id, std::move(e), std::move(payload));
  }
  auto n = payload.nbytes();
  if (p.payload_bytes + n > max_unmatched_bytes_)
    return failed(transfer_name(peer, id) + ": " + std::to_string(p.payload_bytes + n) +
                  " payload bytes would wait for descriptors, more than the cap of " +
                  std::to_string(max_unmatched_bytes_));
  p.payload_bytes += n;
  p.entries[id].payload = std::move(payload);
  return {};
}

std::size_t transfer_table::drop_peer(const std::string& peer) {
  down_.insert(peer);
  auto it = peers_.find(peer);
  if (it == peers_.end())
    return 0;
  auto n = it->second.entries.size();
  peers_.erase(it);
  return n;
}

void transfer_table::open_peer(const std::string& peer) {
  down_.erase(peer);
}

std::map<std::string, std::size_t> transfer_table::clear() {
  std::map<std::string, std::size_t> result;
  for (const auto& [peer, p] : peers_)
    if (!p.entries.empty())
      result[peer] = p.entries.size();
  peers_.clear();
  return result;
}

std::size_t transfer_table::unmatched() const {
  std::size_t n = 0;
  for (const auto& [peer, p] : peers_)
    n += p.entries.size();
  return n;
}

std::size_t transfer_table::unmatched(const std::string& peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() ? 0 : it->second.entries.size();
}

std::uint64_t transfer_table::unmatched_bytes(const std::string& peer) const {
  auto it = peers_.find(peer);
  return it == peers_.end() ? 0 : it->second.payload_bytes;
}

} // namespace troupe::runtime::transport
