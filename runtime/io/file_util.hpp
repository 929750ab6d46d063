#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace troupe::runtime {

/// The bytes of a string, e.g. a JSON text about to be written.
inline std::span<const std::byte> string_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

/// Throws input_error "WHAT 'PATH': strerror(err)": a system call on a file failed.
[[noreturn]] void fail_on_file(const std::string& what, const std::filesystem::path& p, int err);

/// Throws input_error "KIND 'PATH': WHAT": a file of a format (".npz", "IDX
/// file", "data") is not what it should be; every reader names files this way.
[[noreturn]] void bad_file(const std::string& kind, const std::filesystem::path& p,
                           const std::string& what);

/// Replaces `target` with `bytes` so that a reader (or a crash) sees either the
/// old file or the complete new one, never a torn write: writes a temporary file
/// in the same directory, fsyncs it, renames it over the target and fsyncs the
/// directory so the rename itself survives a power loss. Checkpoints rely on
/// this. Throws input_error naming the path and strerror on any failure; the
/// temporary file is removed on failure.
void write_file_atomically(const std::filesystem::path& target, std::span<const std::byte> bytes);

/// Same, from several buffers written back to back (scatter write), so callers
/// can write a header and tensor storages without concatenating them first.
void write_file_atomically(const std::filesystem::path& target,
                           std::span<const std::span<const std::byte>> buffers);

/// Makes the entries of `dir` (renames, creations, removals) durable. A file
/// system that cannot fsync a directory (EINVAL, ENOTSUP) is not an error.
/// Throws input_error naming the directory.
void fsync_directory(const std::filesystem::path& dir);

/// Reads a whole regular file. Throws input_error when the file is missing,
/// unreadable, not a regular file, or larger than `max_bytes` (checked before
/// allocating, so a huge file cannot exhaust memory).
std::vector<std::byte> read_file(const std::filesystem::path& path, std::size_t max_bytes);

/// Lower-case hex SHA-256 of `bytes` (OpenSSL EVP), used to pin data sets and
/// checkpoints.
std::string sha256_hex(std::span<const std::byte> bytes);

/// Creates `dir` (and parents) if needed and proves it writable by writing and
/// removing a probe file, so a job fails before training rather than at its
/// first checkpoint. Throws input_error naming the directory.
void ensure_writable_directory(const std::filesystem::path& dir);

} // namespace troupe::runtime
