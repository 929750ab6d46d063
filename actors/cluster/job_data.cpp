#include "actors/cluster/job_data.hpp"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <string>

#include "models/layers/model_spec.hpp"
#include "runtime/error.hpp"
#include "runtime/io/labeled_arrays.hpp"

namespace troupe::actors {

namespace {

namespace fs = std::filesystem;

/// A directory of IDX files (MNIST's layout): its u8 images keep x / 255 as
/// the default normalisation, as troupe always did.
bool is_idx_directory(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec))
    return false;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.path().filename().string().find("idx") != std::string::npos)
      return true;
  return false;
}

/// A file's arrays as a data set named after what was read.
dataset read_file(const std::string& flag, const std::string& path, const train_options& o,
                  bool train_split) {
  auto a = runtime::read_labeled_arrays(path, {o.x_name, o.y_name}, train_split);
  // The reader's source names the arrays, e.g. "train.npz (x, y)": keep
  // that part after the whole path.
  const auto arrays = a.source.find(" (");
  auto name = flag + " " + path + (arrays == std::string::npos ? "" : a.source.substr(arrays));
  return memory_dataset(std::move(name), std::move(a.x), std::move(a.y));
}

/// Every label of `d` within [0, classes), read in chunks through its source.
void check_labels(const dataset& d, std::int64_t classes, const std::string& model) {
  constexpr std::int64_t chunk = 8192;
  std::vector<std::int32_t> idx;
  for (std::int64_t b = 0; b < d.size(); b += chunk) {
    idx.resize(static_cast<std::size_t>(std::min(chunk, d.size() - b)));
    std::iota(idx.begin(), idx.end(), static_cast<std::int32_t>(b));
    auto y = d.source->read(idx).second;
    const auto* v = y.data<std::int32_t>();
    for (std::int64_t i = 0; i < y.numel(); ++i)
      if (v[i] < 0 || v[i] >= classes)
        throw runtime::input_error(d.name + ": label " + std::to_string(v[i]) + " of sample " +
                                   std::to_string(b + i) + " is outside [0, " +
                                   std::to_string(classes) + "), the classes of model " + model);
  }
}

/// The data set fits the model and its loss: sample size and dtype, labels
/// in range, targets as wide as the model's output.
void check_fits(const dataset& d, const models::model_spec& model, const std::string& model_name,
                loss_kind loss) {
  const auto& s = *d.source;
  const auto per_sample = runtime::shape_numel(s.sample_shape());
  if (per_sample != runtime::shape_numel(model.input_shape))
    throw runtime::input_error(
        d.name + ": samples of shape " + runtime::to_string(s.sample_shape()) + " (" +
        std::to_string(per_sample) + " values), but model " + model_name + " takes " +
        runtime::to_string(model.input_shape) + " (" +
        std::to_string(runtime::shape_numel(model.input_shape)) + " values)");
  if (model.input_dtype != runtime::dtype::f32 && s.sample_dtype() != model.input_dtype)
    throw runtime::input_error(d.name + ": samples of dtype " +
                               std::string{runtime::to_string(s.sample_dtype())} + ", but model " +
                               model_name + " takes " +
                               std::string{runtime::to_string(model.input_dtype)});
  const auto width = models::output_shape(model).back();
  if (loss == loss_kind::cross_entropy) {
    if (s.target_dtype() != runtime::dtype::i32 || !s.target_shape().empty())
      throw runtime::input_error(
          d.name + ": --loss cross_entropy needs one integer label per sample, the targets are " +
          std::string{runtime::to_string(s.target_dtype())} + " " +
          runtime::to_string(s.target_shape()) + " per sample (use --loss mse for real values)");
    check_labels(d, width, model_name);
  } else {
    const auto k = runtime::shape_numel(s.target_shape());
    if (k != width)
      throw runtime::input_error(d.name + ": " + std::to_string(k) +
                                 " target value(s) per sample, but model " + model_name + " has " +
                                 std::to_string(width) + " outputs");
  }
}

/// The loss `asked` for targets of `type`: automatic resolved, the rest checked.
loss_kind resolve_loss(loss_kind asked, runtime::dtype type, const dataset& d) {
  if (asked == loss_kind::sequence)
    throw runtime::input_error(
        "--loss sequence is the language models' loss (--model transformer), not for " + d.name);
  if (asked != loss_kind::automatic)
    return asked;
  return type == runtime::dtype::i32 ? loss_kind::cross_entropy : loss_kind::mse;
}

/// The normalisation --normalize asks for (the default: x / 255 for IDX u8 images).
input_transform make_transform(const job_inputs& job, bool idx_images) {
  const auto type = std::string{runtime::to_string(job.train_set.source->sample_dtype())};
  const auto n = parse_normalize(job.opts.normalize);
  switch (n.how) {
  case normalize_spec::kind::standard:
    return idx_images ? divide_by(255, type) : no_transform(type);
  case normalize_spec::kind::none:
    return no_transform(type);
  case normalize_spec::kind::divide:
    return divide_by(n.divisor, type);
  case normalize_spec::kind::given:
    return standardize(n.mean, n.std, type);
  case normalize_spec::kind::automatic:
    break;
  }
  return standardize_per_feature(job.train_set);
}

} // namespace

void load_labeled_data(job_inputs& job, std::optional<dataset> train, std::optional<dataset> test) {
  auto& o = job.opts;
  const auto& model = job.topology.model;
  bool idx_images = false;
  if (train) {
    job.train_set = std::move(*train);
    if (test)
      job.test_set = std::move(*test);
  } else {
    const bool idx = is_idx_directory(o.data_dir);
    job.train_set = read_file("--data", o.data_dir, o, true);
    idx_images = idx && job.train_set.source->sample_dtype() == runtime::dtype::u8;
    if (!o.test_data.empty()) {
      job.test_set = read_file("--test-data", o.test_data, o, false);
    } else if (o.holdout > 0) {
      const auto n = job.train_set.size();
      const auto held = static_cast<std::int64_t>(static_cast<double>(n) * o.holdout);
      if (held < 1 || held >= n)
        throw runtime::input_error("--holdout " + std::to_string(o.holdout) + " of the " +
                                   std::to_string(n) + " samples of " + job.train_set.name +
                                   " leaves no test or no training sample");
      auto all = job.train_set;
      job.train_set = slice(all, 0, n - held, all.name + " [train]");
      job.test_set = slice(all, n - held, n, all.name + " [holdout]");
    } else if (idx && o.evaluate) {
      job.test_set = read_file("--data", o.data_dir, o, false); // the t10k split
    }
  }
  if (job.train_set.size() == 0)
    throw runtime::input_error(job.train_set.name + ": no samples");
  o.loss = resolve_loss(o.loss, job.train_set.source->target_dtype(), job.train_set);
  check_fits(job.train_set, model, o.model, o.loss);
  if (job.test_set.size() > 0)
    check_fits(job.test_set, model, o.model, o.loss);
  else
    o.evaluate = false; // nothing held out to evaluate on
  job.real_targets = o.loss == loss_kind::mse;
  job.transform = make_transform(job, idx_images);
}

} // namespace troupe::actors
