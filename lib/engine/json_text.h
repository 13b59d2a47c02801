// JSON text helpers shared by the engine's writers (pipeline output, dead
// letters, aggregate results, shuffle keys).
//
// Module sluice::engine owns them. Pure functions: thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace sluice::engine {

// Appends `s` as a JSON string literal: quoted, with ", \ and control
// characters escaped (bytes >= 0x20 pass through: UTF-8 stays as is).
void AppendJsonString(std::string_view s, std::string* out);

// Appends `d` as a JSON number: whole numbers below 2^53 without a fraction,
// others in the shortest form that reads back the same; NaN and infinities
// (not JSON) as null.
void AppendJsonNumber(double d, std::string* out);

}  // namespace sluice::engine
