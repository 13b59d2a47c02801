// Job files: YAML (JSON is YAML too) -> proto::JobSpec, with errors that
// name the file, the line and the field (docs/jobs.md):
//
//   jobs/clicks.yaml: line 12: operators[1].filter.expr: column 9: unknown function 'regon'
//
// Module sluice::engine owns the job language. ParseJobFile reads and checks
// everything that can be checked without the cluster (names, types, units,
// expressions); ValidateJobSpec repeats the checks on a spec from anywhere
// (the leader runs it on every submit, so a job that fails is refused, never
// half-started).
//
// Pure functions: thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "lib/common/status.h"
#include "proto/job.pb.h"

namespace sluice::engine {

// INVALID_ARGUMENT "<file>: line N: <field path>: <why>".
[[nodiscard]] Result<proto::JobSpec> ParseJobFile(std::string_view text, std::string_view file);

// Reads and parses a job file from disk (NOT_FOUND if it cannot be read).
[[nodiscard]] Result<proto::JobSpec> LoadJobFile(const std::string& path);

// INVALID_ARGUMENT naming the field: operators[i]... for an operator.
[[nodiscard]] Status ValidateJobSpec(const proto::JobSpec& spec);

// INVALID_ARGUMENT for a valid job whose shape this release cannot run (a
// keyed stage that is not the job's last operators, update_state with a
// plugin: keyed.h KeyedStageOf). The leader refuses such a job at submit.
[[nodiscard]] Status CheckRunnable(const proto::JobSpec& spec);

}  // namespace sluice::engine
