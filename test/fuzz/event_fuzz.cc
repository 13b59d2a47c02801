// libFuzzer target: the event parsers of a task's pipeline
// (lib/engine/pipeline.h): JSON (simdjson, nested objects flattened) or CSV,
// by the input's first byte, then a filter, a map, a flat_map and a
// project over what was parsed, the output written as JSON lines or CSV.
// Each input is one record of one block; any record must be an event or a
// dead letter.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "lib/engine/job_file.h"
#include "lib/engine/pipeline.h"

namespace {

std::unique_ptr<sluice::engine::Pipeline> Make(const char* parse, const char* sink) {
  using namespace sluice;
  using namespace sluice::engine;
  const std::string text = std::string("name: fuzz\nsources: [s]\nsink: ") + sink +
                           "\noperators:\n  - parse: " + parse +
                           "\n  - filter: \"a.b != 'x' or length(c) > 2 or not (d < 3)\""
                           "\n  - map: {fields: {e: \"a.b * 2 + d\", f: \"upper(c)\"}}"
                           "\n  - flat_map: {split: c, separator: ',', as: g}"
                           "\n  - project: {fields: [a.b, c, e, f, g], rename: {a.b: ab}}\n";
  Result<sluice::proto::JobSpec> spec = ParseJobFile(text, "fuzz.yaml");
  if (!spec.ok()) __builtin_trap();
  Result<std::unique_ptr<Pipeline>> p = Pipeline::Create(*spec);
  if (!p.ok()) __builtin_trap();
  return std::move(*p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  static std::unique_ptr<engine::Pipeline> json = Make("{format: json}", "{stdout: {}}");
  static std::unique_ptr<engine::Pipeline> csv =
      Make("{format: csv, fields: [a.b, c, d], delimiter: ';'}", "{file: {path: /nonexistent, format: csv}}");
  if (size == 0) return 0;
  format::BlockBuilder b("s", 0, 0);
  b.Add(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  const format::Block block = b.Cut();
  std::string out;
  engine::PipelineCounts counts;
  (data[0] % 2 == 0 ? json : csv)->Run(block, &out, &counts);
  if (counts.input != 1) __builtin_trap();
  return 0;
}
