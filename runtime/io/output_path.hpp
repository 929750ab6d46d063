#pragma once

#include <filesystem>
#include <string>

namespace troupe::runtime {

// Checks of the files and directories a run writes only when it ends or at
// its first checkpoint (--report, --trace, --metrics-csv, --checkpoint), made
// before any data is loaded so that a bad path costs seconds, not the run.
// They create nothing: a refused or interrupted run leaves no empty directory.

/// Whether a file can be written at `file` later. With `makes_parents` the
/// writer creates missing directories (the nearest existing one must be a
/// writable directory), else the parent must exist. Throws input_error
/// "FLAG FILE: why", e.g. "--report /x/r.json: directory /x does not exist".
void check_output_file(const std::string& flag, const std::filesystem::path& file,
                       bool makes_parents);

/// Whether the directory `dir` can be created (with its parents) and written
/// later; an existing one must be a writable directory. Throws input_error
/// "FLAG DIR: why".
void check_output_directory(const std::string& flag, const std::filesystem::path& dir);

} // namespace troupe::runtime
