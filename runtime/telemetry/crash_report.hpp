#pragma once

// One line, and a short backtrace, for every way a process can die that is
// not a clean shutdown, so a node that vanishes from a cluster always leaves
// a reason in its log:
//  - a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT): "fatal: NAME
//    (pid P): signal S (SIGSEGV) ..." and the frames from backtrace(3), then
//    the signal is re-raised with its default action, so the exit status and
//    a core dump still say what happened;
//  - an exception that escapes every handler (std::terminate): its what();
//  - SIGINT/SIGTERM where nothing else handles them (a thread that blocks
//    them, e.g. apps' shutdown_signal, keeps its own handling): "NAME (pid
//    P): interrupted by SIGINT" before the default action.
// Under AddressSanitizer the fatal signals are left to ASan, whose reports
// say more.

#include <string>

namespace troupe::runtime {

/// Installs the handlers for the process; `name` (e.g. "troupe node b")
/// starts every line. Call once, early in main, before threads start.
void install_crash_report(const std::string& name);

} // namespace troupe::runtime
