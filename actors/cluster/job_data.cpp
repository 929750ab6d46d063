#include "actors/cluster/job_data.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>

#include "actors/pipeline/data_loader.hpp"
#include "models/layers/model_spec.hpp"
#include "models/train/sequence_loss.hpp"
#include "runtime/error.hpp"
#include "runtime/io/labeled_arrays.hpp"
#include "runtime/io/text_dataset.hpp"
#include "runtime/rng.hpp"

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
input_transform make_transform(const train_options& o, const dataset& train, bool idx_images) {
  const auto type = std::string{runtime::to_string(train.source->sample_dtype())};
  const auto n = parse_normalize(o.normalize);
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
  return standardize_per_feature(train);
}

/// The part of a language model's text held out for evaluation: its last 10%.
constexpr double text_heldout_fraction = 0.1;

/// A language model's data: the text file `file` cut into the training part
/// and the held-out tail, each as non-overlapping windows of the model's
/// context with next-byte targets.
std::pair<dataset, dataset> load_text(const std::string& file, const train_options& opts,
                                      const models::model_spec& model) {
  if (fs::is_directory(file))
    throw runtime::input_error("--model " + opts.model +
                               " reads a text file (--data FILE, e.g. "
                               "data/sherlock.txt), but '" +
                               file + "' is a directory");
  auto text = runtime::text_dataset::load(file, model.input_shape.at(0), text_heldout_fraction);
  const auto vocab = models::output_shape(model).back();
  if (text.vocab_size() > vocab)
    throw runtime::input_error("--data " + file + ": the text has " +
                               std::to_string(text.vocab_size()) + " distinct bytes, more than " +
                               "the " + std::to_string(vocab) + " of model " + opts.model +
                               "'s vocabulary");
  auto name = fs::path(file).filename().string();
  return {text_windows(text, runtime::text_split::train, name + "/train"),
          text_windows(text, runtime::text_split::heldout, name + "/heldout")};
}

/// A language model's token windows, from its text file or given.
job_datasets read_sequence_data(const train_options& o, const models::model_spec& model,
                                std::optional<dataset> train, std::optional<dataset> test) {
  if (o.loss != loss_kind::automatic && o.loss != loss_kind::sequence)
    throw runtime::input_error("--loss " + std::string{to_string(o.loss)} + ": model " + o.model +
                               " is a language model (--loss sequence)");
  job_datasets d;
  if (train) { // token windows given by a library caller
    d.train_set = std::move(*train);
    d.test_set = test.value_or(dataset{});
  } else {
    std::tie(d.train_set, d.test_set) = load_text(o.data_dir, o, model);
  }
  d.loss = o.loss; // automatic means the sequence loss here, as the options say
  d.evaluate = o.evaluate && d.test_set.size() > 0;
  return d;
}

/// The files of --data / --test-data / --holdout as train and test sets.
std::pair<dataset, dataset> read_labeled_files(const train_options& o, bool& idx_images) {
  const bool idx = is_idx_directory(o.data_dir);
  std::pair<dataset, dataset> r;
  auto& [train, test] = r;
  train = read_file("--data", o.data_dir, o, true);
  idx_images = idx && train.source->sample_dtype() == runtime::dtype::u8;
  if (!o.test_data.empty()) {
    test = read_file("--test-data", o.test_data, o, false);
  } else if (o.holdout > 0) {
    const auto n = train.size();
    const auto held = static_cast<std::int64_t>(static_cast<double>(n) * o.holdout);
    if (held < 1 || held >= n)
      throw runtime::input_error("--holdout " + std::to_string(o.holdout) + " of the " +
                                 std::to_string(n) + " samples of " + train.name +
                                 " leaves no test or no training sample");
    auto all = train;
    train = slice(all, 0, n - held, all.name + " [train]");
    test = slice(all, n - held, n, all.name + " [holdout]");
  } else if (idx && o.evaluate) {
    test = read_file("--data", o.data_dir, o, false); // the t10k split
  }
  return r;
}

/// A hash of `d`'s samples and targets (8 bytes at a time through mix64),
/// read in chunks through its source.
std::uint64_t digest_of(const dataset& d, std::uint64_t h) {
  constexpr std::int64_t chunk = 8192;
  std::vector<std::int32_t> idx;
  auto mix = [&h](const runtime::tensor& t) {
    const auto* p = static_cast<const unsigned char*>(t.raw_data());
    const auto n = static_cast<std::size_t>(t.nbytes());
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      std::uint64_t w = 0;
      std::memcpy(&w, p + i, 8);
      h = runtime::mix64(h ^ w);
    }
    for (; i < n; ++i)
      h = runtime::mix64(h ^ p[i]);
  };
  for (std::int64_t b = 0; b < d.size(); b += chunk) {
    idx.resize(static_cast<std::size_t>(std::min(chunk, d.size() - b)));
    std::iota(idx.begin(), idx.end(), static_cast<std::int32_t>(b));
    auto [x, y] = d.source->read(idx);
    mix(x);
    mix(y);
  }
  return h;
}

} // namespace

job_datasets read_job_data(const train_options& opts, const models::model_spec& model,
                           std::optional<dataset> train, std::optional<dataset> test) {
  if (models::is_sequence_model(model))
    return read_sequence_data(opts, model, std::move(train), std::move(test));
  job_datasets d;
  bool idx_images = false;
  if (train) {
    d.train_set = std::move(*train);
    if (test)
      d.test_set = std::move(*test);
  } else {
    std::tie(d.train_set, d.test_set) = read_labeled_files(opts, idx_images);
  }
  if (d.train_set.size() == 0)
    throw runtime::input_error(d.train_set.name + ": no samples");
  d.loss = resolve_loss(opts.loss, d.train_set.source->target_dtype(), d.train_set);
  check_fits(d.train_set, model, opts.model, d.loss);
  if (d.test_set.size() > 0)
    check_fits(d.test_set, model, opts.model, d.loss);
  d.evaluate = opts.evaluate && d.test_set.size() > 0; // nothing held out: no evaluation
  d.real_targets = d.loss == loss_kind::mse;
  d.transform = make_transform(opts, d.train_set, idx_images);
  return d;
}

nlohmann::json summarize(const job_datasets& d, bool digest) {
  char hex[17] = "";
  if (digest) {
    const auto h = digest_of(d.test_set, digest_of(d.train_set, runtime::mix64(1)));
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  }
  return {{"train_samples", d.train_set.size()},    {"test_samples", d.test_set.size()},
          {"loss", std::string{to_string(d.loss)}}, {"evaluate", d.evaluate},
          {"real_targets", d.real_targets},         {"normalization", d.transform.description},
          {"train_name", d.train_set.name},         {"digest", hex}};
}

bool same_data(const nlohmann::json& a, const nlohmann::json& b) {
  for (const auto* k : {"train_samples", "test_samples", "loss", "evaluate", "real_targets",
                        "normalization", "digest"})
    if (a.value(k, nlohmann::json{}) != b.value(k, nlohmann::json{}))
      return false;
  return true;
}

} // namespace troupe::actors
