#pragma once

// What a job asks of its data beyond the file: the loss and the input
// normalisation. Parsed once where text comes in (CLI flags, option JSON);
// everything else holds the parsed values.

#include <optional>
#include <string>
#include <string_view>

namespace troupe::actors {

/// The training loss. automatic: cross-entropy for integer labels, mse for
/// real-valued targets, the per-token sequence loss for a language model.
enum class loss_kind { automatic, cross_entropy, mse, sequence };

/// "auto", "cross_entropy", "mse" or "sequence": the form of flags, JSON and reports.
std::string_view to_string(loss_kind k);

/// The loss `s` names; throws runtime::input_error naming the value otherwise.
loss_kind parse_loss_kind(std::string_view s);

/// Where a cluster job's data loaders run and read the data (--data-from).
/// nodes: each replica's loader on the node of its first stage, reading the
/// files there (through the node's --data-path map); supervisor: in the
/// supervisor's process, which reads every input and ships it to the nodes.
enum class data_source { nodes, supervisor };

/// "nodes" or "supervisor".
std::string_view to_string(data_source s);

/// The source `s` names; throws runtime::input_error naming the value otherwise.
data_source parse_data_source(std::string_view s);

/// How inputs are normalised before the model sees them (--normalize).
struct normalize_spec {
  enum class kind {
    standard, ///< none asked: x as it is, except MNIST-style u8 IDX images (x / 255)
    none,     ///< "none": x as it is, always
    divide,   ///< "D": x / D (computed as x * (1 / D), as the MNIST default always was)
    given,    ///< "MEAN,STD": (x - MEAN) / STD
    automatic ///< "auto": per-feature mean and std of the training split
  };
  kind how = kind::standard;
  double divisor = 1;
  double mean = 0;
  double std = 1;
};

/// Parses --normalize's value ("" and "none" included); throws
/// runtime::input_error naming the value and what is wrong.
normalize_spec parse_normalize(const std::string& text);

} // namespace troupe::actors
