#pragma once

#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <nlohmann/json.hpp>

#include "kernels/cpu/gemm_backend.hpp"
#include "runtime/device.hpp"

namespace troupe::actors {

/// One compute resource: a CPU core set (later a CUDA stream). Owns a thread
/// (spawned detached) on which it runs the kernels that layer shards submit,
/// in submission order, like a CUDA stream. BLAS calls from that thread use
/// exactly `threads` threads, so devices never oversubscribe the cores.
struct device_config {
  std::string name = "cpu:0";
  runtime::device where = runtime::device::cpu();
  int threads = 1;
  /// The library its GEMMs run on (set for its thread, as the BLAS threads are).
  kernels::cpu::gemm_backend gemm = kernels::cpu::gemm_backend::automatic;
};

nlohmann::json to_json(const device_config& c);
/// Throws runtime::input_error for a malformed config (threads 1..1024, CPU only).
device_config device_config_from_json(const nlohmann::json& j);

/// Work for a device: a closure run on the device's thread. It sends its own
/// results (to the submitting shard or straight to peers), so a finished task
/// costs no extra hop. A layer shard's task is a whole step's action list: it
/// returns to the mailbox only to wait for an input, and the shard sends it
/// again once the input is here. In-process only: never serialised.
struct device_task {
  std::function<void()> run;
};

/// Spawns a device actor on its own thread. It answers:
///   device_task            -> runs it
///   (measure_atom)         -> double: sgemm GFLOP/s on 256x1024x1024, measured once
/// The cores a device config pins its thread to ("cores", optional: job
/// specs with --pin-cores); empty: the scheduler's choice.
std::vector<int> device_cores_from_json(const nlohmann::json& j);

/// With `cores`, the device's thread (and its BLAS threads) runs on them,
/// where this process may use them all (else they are ignored).
caf::actor spawn_device(caf::actor_system& sys, device_config cfg, std::vector<int> cores = {});

} // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::device_task)
