#include "actors/plan/collective_algorithms.hpp"

#include <stdexcept>

namespace troupe::actors::collectives {

namespace {

int mod(int a, int n) { return ((a % n) + n) % n; }

void check_ranks(int n, const char* what) {
  if (n < 1)
    throw std::invalid_argument(std::string{what} + ": rank count must be >= 1, got " +
                                std::to_string(n));
}

collective_plan empty_plan(int n, int blocks, std::size_t length) {
  collective_plan p;
  p.ranks = n;
  p.blocks = blocks;
  p.steps.assign(static_cast<std::size_t>(n), std::vector<plan_step>(length));
  return p;
}

std::vector<std::vector<bool>> keep_all(int n, int blocks) {
  return std::vector<std::vector<bool>>(static_cast<std::size_t>(n),
                                        std::vector<bool>(static_cast<std::size_t>(blocks), true));
}

} // namespace

std::vector<chunk> partition(std::int64_t numel, int parts) {
  if (parts < 1)
    throw std::invalid_argument("partition: parts must be >= 1");
  if (numel < 0)
    throw std::invalid_argument("partition: negative element count");
  std::vector<chunk> out(static_cast<std::size_t>(parts));
  auto base = numel / parts;
  auto extra = numel % parts;
  std::int64_t off = 0;
  for (int i = 0; i < parts; ++i) {
    auto c = base + (i < extra ? 1 : 0);
    out[static_cast<std::size_t>(i)] = chunk{off, c};
    off += c;
  }
  return out;
}

void mark_releases(collective_plan& p, const std::vector<std::vector<bool>>& keep) {
  for (int r = 0; r < p.ranks; ++r) {
    auto& steps = p.steps[static_cast<std::size_t>(r)];
    for (std::size_t s = 0; s < steps.size(); ++s) {
      auto& st = steps[s];
      st.release_after_send = false;
      if (st.send_to < 0)
        continue;
      int b = st.send_block;
      // Received at this same step: the send went first and the receive
      // (copy) overwrites it, or a reduce reads it.
      bool decided = false;
      bool release = false;
      if (st.recv_from >= 0 && st.recv_block == b) {
        decided = true;
        release = st.action == on_receive::copy;
      }
      for (std::size_t t = s + 1; !decided && t < steps.size(); ++t) {
        const auto& u = steps[t];
        if (u.send_to >= 0 && u.send_block == b) {
          decided = true; // read again
        } else if (u.recv_from >= 0 && u.recv_block == b) {
          decided = true;
          release = u.action == on_receive::copy;
        }
      }
      if (!decided)
        release = !keep[static_cast<std::size_t>(r)][static_cast<std::size_t>(b)];
      st.release_after_send = release;
    }
  }
}

collective_plan ring_reduce_scatter(int n) {
  check_ranks(n, "ring_reduce_scatter");
  auto p = empty_plan(n, n, static_cast<std::size_t>(n - 1));
  for (int r = 0; r < n; ++r)
    for (int s = 0; s < n - 1; ++s) {
      auto& st = p.steps[static_cast<std::size_t>(r)][static_cast<std::size_t>(s)];
      st.send_to = mod(r + 1, n);
      st.send_block = mod(r - s - 1, n);
      st.recv_from = mod(r - 1, n);
      st.recv_block = mod(r - s - 2, n);
      st.action = on_receive::reduce_recv_first;
    }
  std::vector<std::vector<bool>> keep(static_cast<std::size_t>(n),
                                      std::vector<bool>(static_cast<std::size_t>(n), false));
  for (int r = 0; r < n; ++r)
    keep[static_cast<std::size_t>(r)][static_cast<std::size_t>(r)] = true;
  mark_releases(p, keep);
  return p;
}

collective_plan ring_all_gather(int n) {
  check_ranks(n, "ring_all_gather");
  auto p = empty_plan(n, n, static_cast<std::size_t>(n - 1));
  for (int r = 0; r < n; ++r)
    for (int s = 0; s < n - 1; ++s) {
      auto& st = p.steps[static_cast<std::size_t>(r)][static_cast<std::size_t>(s)];
      st.send_to = mod(r + 1, n);
      st.send_block = mod(r - s, n);
      st.recv_from = mod(r - 1, n);
      st.recv_block = mod(r - s - 1, n);
      st.action = on_receive::copy;
    }
  mark_releases(p, keep_all(n, n));
  return p;
}

collective_plan ring_allreduce(int n) {
  check_ranks(n, "ring_allreduce");
  auto rs = ring_reduce_scatter(n);
  auto ag = ring_all_gather(n);
  auto p = empty_plan(n, n, 0);
  for (int r = 0; r < n; ++r) {
    auto& steps = p.steps[static_cast<std::size_t>(r)];
    const auto& a = rs.steps[static_cast<std::size_t>(r)];
    const auto& b = ag.steps[static_cast<std::size_t>(r)];
    steps.insert(steps.end(), a.begin(), a.end());
    steps.insert(steps.end(), b.begin(), b.end());
  }
  mark_releases(p, keep_all(n, n));
  return p;
}

collective_plan tree_allreduce(int n) {
  check_ranks(n, "tree_allreduce");
  int pow2 = 1;
  int levels = 0;
  while (pow2 * 2 <= n) {
    pow2 *= 2;
    ++levels;
  }
  int rem = n - pow2;
  std::size_t length = static_cast<std::size_t>(levels + (rem > 0 ? 2 : 0));
  auto p = empty_plan(n, 1, length);
  std::size_t s = 0;
  if (rem > 0) {
    for (int r = pow2; r < n; ++r) {
      auto& st = p.steps[static_cast<std::size_t>(r)][s];
      st.send_to = r - pow2;
      st.send_block = 0;
      auto& rx = p.steps[static_cast<std::size_t>(r - pow2)][s];
      rx.recv_from = r;
      rx.recv_block = 0;
      rx.action = on_receive::reduce_own_first;
    }
    ++s;
  }
  for (int k = 0; k < levels; ++k, ++s) {
    for (int r = 0; r < pow2; ++r) {
      int partner = r ^ (1 << k);
      auto& st = p.steps[static_cast<std::size_t>(r)][s];
      st.send_to = partner;
      st.send_block = 0;
      st.recv_from = partner;
      st.recv_block = 0;
      st.action = partner < r ? on_receive::reduce_recv_first : on_receive::reduce_own_first;
    }
  }
  if (rem > 0) {
    for (int r = pow2; r < n; ++r) {
      auto& st = p.steps[static_cast<std::size_t>(r - pow2)][s];
      st.send_to = r;
      st.send_block = 0;
      auto& rx = p.steps[static_cast<std::size_t>(r)][s];
      rx.recv_from = r - pow2;
      rx.recv_block = 0;
      rx.action = on_receive::copy;
    }
  }
  mark_releases(p, keep_all(n, 1));
  return p;
}

collective_plan binomial_broadcast(int n, int root) {
  check_ranks(n, "binomial_broadcast");
  if (root < 0 || root >= n)
    throw std::invalid_argument("binomial_broadcast: root " + std::to_string(root) +
                                " out of range for " + std::to_string(n) + " ranks");
  std::size_t levels = 0;
  while ((1 << levels) < n)
    ++levels;
  auto p = empty_plan(n, 1, levels);
  for (std::size_t k = 0; k < levels; ++k) {
    int mask = 1 << k;
    for (int v = 0; v < mask && v + mask < n; ++v) {
      int from = mod(v + root, n);
      int to = mod(v + mask + root, n);
      auto& st = p.steps[static_cast<std::size_t>(from)][k];
      st.send_to = to;
      st.send_block = 0;
      auto& rx = p.steps[static_cast<std::size_t>(to)][k];
      rx.recv_from = from;
      rx.recv_block = 0;
      rx.action = on_receive::copy;
    }
  }
  mark_releases(p, keep_all(n, 1));
  return p;
}

std::string to_string(allreduce_algo a) {
  switch (a) {
    case allreduce_algo::automatic:
      return "auto";
    case allreduce_algo::ring:
      return "ring";
    case allreduce_algo::tree:
      return "tree";
  }
  return "?";
}

allreduce_algo parse_allreduce_algo(const std::string& s) {
  if (s == "auto")
    return allreduce_algo::automatic;
  if (s == "ring")
    return allreduce_algo::ring;
  if (s == "tree")
    return allreduce_algo::tree;
  throw std::invalid_argument("unknown all-reduce algorithm '" + s +
                              "' (expected auto, ring or tree)");
}

allreduce_algo choose_allreduce(std::size_t bytes, int n, std::size_t threshold,
                                allreduce_algo forced) {
  if (forced != allreduce_algo::automatic)
    return forced;
  if (n <= 1 || bytes < threshold)
    return allreduce_algo::tree;
  return allreduce_algo::ring;
}

} // namespace troupe::actors::collectives
