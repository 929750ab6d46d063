#include "actors/plan/train_options.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string_view>
#include <type_traits>
#include <vector>

#include "runtime/error.hpp"

namespace troupe::actors {

namespace {

void require(bool ok, const std::string& what) {
  if (!ok)
    throw runtime::input_error(what);
}

} // namespace

void train_options::validate() const {
  require(epochs >= 1 && epochs <= 100000,
          "--epochs must be in [1, 100000], got " + std::to_string(epochs));
  require(batch >= 1 && batch <= (1 << 20),
          "--batch must be in [1, 1048576], got " + std::to_string(batch));
  require(optimizer == "sgd" || optimizer == "adam" || optimizer == "adamw",
          "--optimizer must be sgd, adam or adamw, got '" + optimizer + "'");
  require(lr > 0 && lr < 100, "--lr must be in (0, 100), got " + std::to_string(lr));
  require(momentum >= 0 && momentum < 1, "--momentum must be in [0, 1)");
  require(weight_decay >= 0 && weight_decay < 1, "--weight-decay must be in [0, 1)");
  require(lr_schedule == "constant" || lr_schedule == "cosine",
          "--lr-schedule must be constant or cosine, got '" + lr_schedule + "'");
  require(warmup_steps >= 0 && warmup_steps <= (std::int64_t{1} << 40),
          "--warmup-steps must be >= 0, got " + std::to_string(warmup_steps));
  require(clip_norm >= 0 && clip_norm < 1e30,
          "--clip-norm must be >= 0 (0: off), got " + std::to_string(clip_norm));
  require(stages >= 1 && stages <= 64,
          "--stages must be in [1, 64], got " + std::to_string(stages));
  require(microbatches >= 1 && microbatches <= batch,
          "--microbatches must be in [1, batch], got " + std::to_string(microbatches));
  require(virtual_stages >= 1 && virtual_stages <= 64,
          "--virtual-stages must be in [1, 64], got " + std::to_string(virtual_stages));
  require(virtual_stages == 1 || schedule == schedule_kind::interleaved ||
              schedule == schedule_kind::zbv,
          "--virtual-stages " + std::to_string(virtual_stages) +
              " needs --schedule interleaved (got " + std::string{to_string(schedule)} + ")");
  require(schedule != schedule_kind::zbv || virtual_stages == 2,
          "--schedule zbv runs two chunks per device (--virtual-stages 2), got --virtual-stages " +
              std::to_string(virtual_stages));
  require(partition == "flops" || partition == "measured",
          "--partition must be flops or measured, got '" + partition + "'");
  require(split.empty() || static_cast<int>(split.size()) == stages * virtual_stages,
          "--split needs one layer count per chunk (" + std::to_string(stages * virtual_stages) +
              "), got " + std::to_string(split.size()));
  for (int n : split)
    require(n >= 1, "--split: every chunk needs at least one layer, got " + std::to_string(n));
  require(dp >= 1 && dp <= 1024, "--dp must be in [1, 1024], got " + std::to_string(dp));
  require(batch_shares.empty() || static_cast<int>(batch_shares.size()) == dp,
          "--batch-shares needs one share per replica (" + std::to_string(dp) + "), got " +
              std::to_string(batch_shares.size()));
  for (double w : batch_shares)
    require(w > 0 && w < 1e9,
            "--batch-shares: every share must be positive, got " + std::to_string(w));
  require(bucket_bytes >= 0 && bucket_bytes <= (std::int64_t{1} << 40), "--bucket-mb must be >= 0");
  require(allreduce == "auto" || allreduce == "ring" || allreduce == "tree",
          "--allreduce must be auto, ring or tree, got '" + allreduce + "'");
  require(tree_threshold_bytes >= 0, "--tree-threshold must be >= 0");
  require(check_replicas >= 0, "--check-replicas must be >= 0 (0: never)");
  require(tp >= 1 && tp <= 64, "--tp must be in [1, 64], got " + std::to_string(tp));
  require(ps >= 0 && ps <= 256, "--ps must be in [0, 256], got " + std::to_string(ps));
  require(staleness >= 0 && staleness <= 1000000,
          "--staleness must be >= 0, got " + std::to_string(staleness));
  require(staleness == 0 || ps_mode == ps_mode::ssp, "--staleness needs --ps-mode ssp");
  require(holdout >= 0 && holdout < 1,
          "--holdout must be in [0, 1), got " + std::to_string(holdout));
  require(holdout == 0 || test_data.empty(), "--holdout and --test-data exclude each other");
  (void)parse_normalize(normalize); // throws naming the value
  require(ps_split_bytes >= 4, "--ps-split-bytes must be >= 4");
  if (ps > 0) {
    require(tp == 1, "--ps with --tp is not supported: tensor-parallel slices would need "
                     "per-slice parameter-server assignments");
    require(clip_norm == 0, "--clip-norm is not supported with --ps: the parameter servers "
                            "apply the updates and do not clip");
    require(check_replicas == 0 || ps_mode == ps_mode::sync,
            "--check-replicas needs --ps-mode sync (async workers differ by design)");
  } else {
    require(ps_mode == ps_mode::sync, "--ps-mode needs --ps S");
  }
  require(plan.is_null() || plan.is_object(), "--plan: a plan must be a JSON object");
  require(model_spec.is_null() || model_spec.is_object(),
          "--model: a model spec must be a JSON object");
  require(batch >= dp, "--batch " + std::to_string(batch) + " is smaller than --dp " +
                           std::to_string(dp) + ": every replica needs a sample");
  require(max_steps == -1 || max_steps >= 1, "--steps must be >= 1");
  require(eval_every >= 0, "--eval-every must be >= 0");
  require(!evaluate_only || !resume_dir.empty(), "evaluating needs a checkpoint (resume_dir)");
  require(!predict || evaluate_only, "predictions are made by an evaluation (evaluate_only)");
  require(threads >= 0 && threads <= 1024, "--threads must be in [0, 1024]");
  require(timing_warmup >= 0, "timing_warmup must be >= 0");
  require(trace_file.empty() || !std::filesystem::path(trace_file).filename().empty(),
          "--trace must name a file, got '" + trace_file + "'");
  require(slow_stage >= -1 && slow_stage < stages,
          "--slow-stage must be -1 (none) or a stage in [0, " + std::to_string(stages) + "), got " +
              std::to_string(slow_stage));
  require(slow_factor >= 1.0 && slow_factor <= 100.0,
          "--slow-factor must be in [1, 100], got " + std::to_string(slow_factor));
  require(slow_replica >= -1 && slow_replica < dp,
          "--slow-replica must be -1 (all) or a replica in [0, " + std::to_string(dp) + ")");
  require(max_restarts >= 0 && max_restarts <= 1000, "--max-restarts must be in [0, 1000]");
  require(min_dp >= 1 && min_dp <= dp, "--min-dp must be in [1, --dp " + std::to_string(dp) +
                                           "], got " + std::to_string(min_dp));
  require(rejoin_wait_s >= 0 && rejoin_wait_s <= 86400, "--rejoin-wait must be in [0, 86400] s");
  require(snapshot_every >= -1, "--snapshot-every must be >= 0 (0: never) or -1 (auto)");
  require(checkpoint_every >= 0, "--checkpoint-every must be >= 0 (0: epoch ends only)");
  require(checkpoint_seconds >= 0, "--checkpoint-seconds must be >= 0 (0: off)");
  require((checkpoint_every == 0 && checkpoint_seconds == 0) || !checkpoint_dir.empty(),
          "--checkpoint-every and --checkpoint-seconds need --checkpoint DIR");
  require(stall_timeout_s >= 0, "--stall-timeout must be >= 0 (0: auto)");
  auto f = parse_fault(fault);
  require(f.ps < ps, "--inject-fault: ps shard " + std::to_string(f.ps) + " does not exist (--ps " +
                         std::to_string(ps) + ")");
  require(f.stage < stages, "--inject-fault: stage " + std::to_string(f.stage) + " does not exist");
  require(f.replica < dp, "--inject-fault: replica " + std::to_string(f.replica) +
                              " does not exist (--dp " + std::to_string(dp) + ")");
}

fault_spec parse_fault(const std::string& full) {
  fault_spec f;
  if (full.empty())
    return f;
  std::string text = full;
  if (text.rfind("probe:", 0) == 0) {
    const auto eq = text.find('=');
    f.kind = fault_kind::probe;
    f.node = text.substr(6, eq == std::string::npos ? std::string::npos : eq - 6);
    f.probe = eq == std::string::npos ? "" : text.substr(eq + 1);
    if (f.node.empty() || (f.probe != "zero" && f.probe != "absurd" && f.probe != "hang"))
      throw runtime::input_error("--inject-fault: expected probe:NODE=zero|absurd|hang, got '" +
                                 full + "'");
    return f;
  }
  constexpr std::pair<std::string_view, fault_kind> prefixes[] = {{"perturb:", fault_kind::perturb},
                                                                  {"hang:", fault_kind::hang},
                                                                  {"exit:", fault_kind::exit},
                                                                  {"cut:", fault_kind::cut}};
  for (const auto& [prefix, kind] : prefixes)
    if (text.rfind(prefix, 0) == 0) {
      f.kind = kind;
      text = text.substr(prefix.size());
      if (text.rfind("ps=", 0) == 0)
        throw runtime::input_error("--inject-fault: " + std::string{prefix} +
                                   " applies to layer shards (" + std::string{prefix} +
                                   "stage=S,step=N[,replica=R]), got '" + full + "'");
    }
  long long stage = -1, step = -1, replica = 0;
  char tail = 0;
  if (text.rfind("ps=", 0) == 0) {
    long long shard = -1;
    if (std::sscanf(text.c_str(), "ps=%lld,step=%lld%c", &shard, &step, &tail) != 2 || shard < 0 ||
        shard > 256 || step < 0)
      throw runtime::input_error("--inject-fault: expected ps=S,step=N, got '" + text + "'");
    f.ps = static_cast<int>(shard);
    f.step = step;
    return f;
  }
  int n = std::sscanf(text.c_str(), "stage=%lld,step=%lld,replica=%lld%c", &stage, &step, &replica,
                      &tail);
  if ((n != 2 && n != 3) || stage < 0 || step < 0 || stage > 1000 || replica < 0 || replica > 1024)
    throw runtime::input_error(
        "--inject-fault: expected [perturb:|hang:|exit:|cut:]stage=S,step=N[,replica=R] or "
        "ps=S,step=N, "
        "got '" +
        full + "'");
  f.stage = static_cast<int>(stage);
  f.step = step;
  f.replica = static_cast<int>(replica);
  return f;
}

nlohmann::json train_options::optimizer_config() const {
  nlohmann::json j{{"type", optimizer}, {"lr", lr}, {"weight_decay", weight_decay}};
  if (optimizer == "sgd")
    j["momentum"] = momentum;
  return j;
}

namespace {

/// One option's JSON form: its name, and how it is written and read. The
/// table below is the one list of options both directions use.
struct option_field {
  const char* name;
  nlohmann::json (*write)(const train_options&);
  void (*read)(train_options&, const nlohmann::json&);
};

/// A field whose JSON form is its value's (numbers, strings, lists).
template <auto Member>
option_field field(const char* name) {
  return {name, [](const train_options& o) { return nlohmann::json(o.*Member); },
          [](train_options& o, const nlohmann::json& v) {
            using T = std::remove_cvref_t<decltype(o.*Member)>;
            o.*Member = v.get<T>();
          }};
}

const std::vector<option_field>& option_fields() {
  static const std::vector<option_field> fields = {
      field<&train_options::model>("model"),
      field<&train_options::model_spec>("model_spec"),
      field<&train_options::data_dir>("data_dir"),
      field<&train_options::epochs>("epochs"),
      field<&train_options::batch>("batch"),
      field<&train_options::optimizer>("optimizer"),
      field<&train_options::lr>("lr"),
      field<&train_options::momentum>("momentum"),
      field<&train_options::weight_decay>("weight_decay"),
      field<&train_options::lr_schedule>("lr_schedule"),
      field<&train_options::warmup_steps>("warmup_steps"),
      field<&train_options::clip_norm>("clip_norm"),
      field<&train_options::seed>("seed"),
      field<&train_options::stages>("stages"),
      field<&train_options::microbatches>("microbatches"),
      {"schedule",
       [](const train_options& o) { return nlohmann::json(std::string{to_string(o.schedule)}); },
       [](train_options& o, const nlohmann::json& v) {
         o.schedule = parse_schedule_kind(v.get<std::string>());
       }},
      field<&train_options::virtual_stages>("virtual_stages"),
      field<&train_options::partition>("partition"),
      field<&train_options::split>("split"),
      field<&train_options::dp>("dp"),
      field<&train_options::batch_shares>("batch_shares"),
      {"balance",
       [](const train_options& o) { return nlohmann::json(std::string{to_string(o.balance)}); },
       [](train_options& o, const nlohmann::json& v) {
         o.balance = parse_balance_mode(v.get<std::string>());
       }},
      field<&train_options::bucket_bytes>("bucket_bytes"),
      field<&train_options::allreduce>("allreduce"),
      field<&train_options::tree_threshold_bytes>("tree_threshold_bytes"),
      field<&train_options::check_replicas>("check_replicas"),
      field<&train_options::tp>("tp"),
      field<&train_options::ps>("ps"),
      {"ps_mode",
       [](const train_options& o) { return nlohmann::json(std::string{to_string(o.ps_mode)}); },
       [](train_options& o, const nlohmann::json& v) {
         o.ps_mode = parse_ps_mode(v.get<std::string>());
       }},
      field<&train_options::staleness>("staleness"),
      field<&train_options::ps_split_bytes>("ps_split_bytes"),
      field<&train_options::plan>("plan"),
      field<&train_options::slow_replica>("slow_replica"),
      field<&train_options::max_steps>("max_steps"),
      field<&train_options::evaluate>("evaluate"),
      field<&train_options::threads>("threads"),
      {"gemm",
       [](const train_options& o) { return nlohmann::json(kernels::cpu::to_string(o.gemm)); },
       [](train_options& o, const nlohmann::json& v) {
         o.gemm = kernels::cpu::parse_gemm_backend(v.get<std::string>());
       }},
      field<&train_options::pin_cores>("pin_cores"),
      field<&train_options::checkpoint_dir>("checkpoint_dir"),
      field<&train_options::resume_dir>("resume_dir"),
      field<&train_options::overwrite>("overwrite"),
      field<&train_options::progress>("progress"),
      field<&train_options::trace_file>("trace_file"),
      field<&train_options::fault>("fault"),
      field<&train_options::timing_warmup>("timing_warmup"),
      field<&train_options::slow_stage>("slow_stage"),
      field<&train_options::slow_factor>("slow_factor"),
      field<&train_options::max_restarts>("max_restarts"),
      field<&train_options::min_dp>("min_dp"),
      field<&train_options::rejoin_wait_s>("rejoin_wait_s"),
      field<&train_options::snapshot_every>("snapshot_every"),
      field<&train_options::checkpoint_every>("checkpoint_every"),
      field<&train_options::checkpoint_seconds>("checkpoint_seconds"),
      field<&train_options::stall_timeout_s>("stall_timeout_s"),
      field<&train_options::test_data>("test_data"),
      field<&train_options::holdout>("holdout"),
      field<&train_options::x_name>("x_name"),
      field<&train_options::y_name>("y_name"),
      field<&train_options::normalize>("normalize"),
      {"loss",
       [](const train_options& o) { return nlohmann::json(std::string{to_string(o.loss)}); },
       [](train_options& o, const nlohmann::json& v) {
         o.loss = parse_loss_kind(v.get<std::string>());
       }},
      {"data_from",
       [](const train_options& o) { return nlohmann::json(std::string{to_string(o.data_from)}); },
       [](train_options& o, const nlohmann::json& v) {
         o.data_from = parse_data_source(v.get<std::string>());
       }},
      field<&train_options::eval_every>("eval_every"),
      field<&train_options::evaluate_only>("evaluate_only"),
      field<&train_options::predict>("predict"),
  };
  return fields;
}

} // namespace

nlohmann::json to_json(const train_options& o) {
  auto j = nlohmann::json::object();
  for (const auto& f : option_fields())
    j[f.name] = f.write(o);
  return j;
}

train_options train_options_from_json(const nlohmann::json& j) {
  if (!j.is_object())
    throw runtime::input_error("training options must be a JSON object");
  train_options o;
  const auto& fields = option_fields();
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& k = it.key();
    auto f = std::find_if(fields.begin(), fields.end(),
                          [&](const option_field& x) { return k == x.name; });
    if (f == fields.end())
      throw runtime::input_error("unknown training option '" + k + "'");
    try {
      f->read(o, it.value());
    } catch (const nlohmann::json::exception& e) {
      throw runtime::input_error("training option '" + k + "': " + e.what());
    }
  }
  o.validate();
  return o;
}

} // namespace troupe::actors
