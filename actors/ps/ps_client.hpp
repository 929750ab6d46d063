#pragma once

// The worker side of the parameter servers (ps_shard.hpp): a layer shard
// (one data-parallel worker's pipeline stage) holds one ps_client in its
// actor state and calls it on that actor's thread. Per training step:
//
//   push(s, params, lr, scale)   after the backward of step s: each ps shard
//                                holding pieces of this stage gets its
//                                pieces' gradients as one flat tensor
//   request(s + 1)               asks those shards for step s + 1's values
//   on_params(msg) -> bool       for each ps_msg reply; true once all are in
//   apply(params)                writes the pulled values into the parameters
//
// Shards holding none of this stage's pieces get no message at all; a stage
// without parameters has no shards (active() is false) and is ready at once.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <caf/actor.hpp>

#include "actors/plan/ps_assignment.hpp"
#include "models/layers/parameter.hpp"
#include "actors/protocol/messages.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

class ps_client {
public:
  /// Inactive: no stage, no shards.
  ps_client() = default;
  /// `shards[i]` is ps shard i (assignment.shards of them); `self` is the
  /// owning actor, to which the shards send their replies (through `courier`
  /// when they live in another process; null courier: single process).
  /// Throws runtime::input_error when the shard list does not match.
  ps_client(std::int32_t stage, std::int32_t worker, ps_assignment assignment,
            std::vector<caf::actor> shards, std::shared_ptr<runtime::transport::courier> courier,
            caf::actor self);

  /// Whether any ps shard holds pieces of this stage.
  bool active() const noexcept { return !holders_.empty(); }
  /// The ps shards holding pieces of this stage, ascending.
  const std::vector<int>& holders() const noexcept { return holders_; }
  std::int32_t stage() const noexcept { return stage_; }
  std::int32_t worker() const noexcept { return worker_; }

  /// Sends step `step`'s gradients: parameter p's gradient, or zeros where p
  /// got none this step (grad_fresh or undefined), packed per shard in piece
  /// order. `params` must be exactly this stage's parameters (any order).
  /// Throws runtime::input_error for a missing, extra or mis-sized parameter.
  void push(std::int64_t step, std::span<models::parameter* const> params, float lr, float scale);
  /// Asks every holder for the parameters to run `step`; replaces (and
  /// forgets the replies of) any earlier request.
  void request(std::int64_t step);
  /// Takes one reply. Throws runtime::input_error for a reply that is not
  /// for this worker, stage and requested step, from a shard that holds
  /// nothing of the stage, twice from one shard, or of the wrong size.
  /// Returns ready().
  bool on_params(actors::ps_msg&& m);
  /// Every holder answered the current request (true when inactive).
  bool ready() const noexcept { return answered_ == holders_.size(); }
  /// Writes the pulled values into `params` (this stage's parameters): each
  /// gets fresh storage, never a write into a tensor someone else may hold.
  /// Records the versions and clears the request. Throws std::logic_error
  /// when not ready() and runtime::input_error like push().
  void apply(std::span<models::parameter* const> params);

  /// The step of the current request (-1: none).
  std::int64_t requested() const noexcept { return requested_; }
  /// Per ps shard, the version of the last applied reply (-1: none yet, or
  /// not a holder).
  const std::vector<std::int64_t>& versions() const noexcept { return versions_; }
  /// Pushes sent and pulls applied, and their tensor payload bytes.
  std::uint64_t pushes() const noexcept { return pushes_; }
  std::uint64_t pulls() const noexcept { return pulls_; }
  std::uint64_t bytes_pushed() const noexcept { return bytes_pushed_; }
  std::uint64_t bytes_pulled() const noexcept { return bytes_pulled_; }

private:
  /// `params` by name, checked against this stage's parameters.
  std::vector<models::parameter*> match(std::span<models::parameter* const> params) const;

  std::int32_t stage_ = 0;
  std::int32_t worker_ = 0;
  ps_assignment assignment_;
  std::vector<caf::actor> shards_;
  std::shared_ptr<runtime::transport::courier> courier_;
  caf::actor self_;
  std::vector<int> holders_;
  /// This stage's parameters (indices into assignment_.params), model order.
  std::vector<std::size_t> params_;
  std::int64_t requested_ = -1;
  std::vector<actors::ps_msg> replies_; ///< by shard; data undefined until answered
  std::vector<bool> has_reply_;
  std::size_t answered_ = 0;
  std::vector<std::int64_t> versions_;
  std::uint64_t pushes_ = 0, pulls_ = 0, bytes_pushed_ = 0, bytes_pulled_ = 0;
};

} // namespace troupe::actors
