// uppercase_plugin: an example Sluice plugin (docs/jobs.md, "Plugins").
//
//   operators:
//     - parse: {format: json}
//     - plugin:
//         name: uppercase_plugin   # uppercase_plugin.so in the workers' plugin-dirs
//         config: {field: tags, as: tag, split: ","}
//
// Upper-cases (ASCII) the string field `field` into the field `as` (default:
// `field` itself, replaced in place; a new field goes last). With `split`,
// the field is cut at each occurrence of that separator and one event is
// emitted per non-empty piece. So it filters, maps and flat-maps:
//   - the field missing, null or empty (or only separators): no event;
//   - the field a number or a boolean: the record is a dead letter.
// Config keys other than field, as and split are refused, so a typo fails
// the job's first task with a message rather than doing nothing.
//
// Built with nothing but the plugin header (<sluice> the source tree):
//   g++ -std=c++17 -O2 -shared -fPIC -fvisibility=hidden -I<sluice> uppercase_plugin.cc -o uppercase_plugin.so
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "lib/engine/plugin_api.h"

namespace {

using sluice::plugin::Emitter;
using sluice::plugin::Event;
using sluice::plugin::Field;
using sluice::plugin::Value;

class Uppercase final : public sluice::plugin::Operator {
 public:
  Uppercase(std::string field, std::string as, std::string split)
      : field_(std::move(field)), as_(std::move(as)), split_(std::move(split)) {
    not_a_string_ = "field '" + field_ + "' is not a string";
  }

  void Process(const Event& in, Emitter& out) override {
    const Value v = in.Get(field_);
    if (v.is_null()) return;
    if (!v.is_string()) {
      out.Reject(not_a_string_);
      return;
    }
    const std::string_view s = v.string;
    if (split_.empty()) {
      EmitUpper(in, s, out);
      return;
    }
    size_t start = 0;
    while (start <= s.size()) {
      const size_t end = std::min(s.find(split_, start), s.size());
      EmitUpper(in, s.substr(start, end - start), out);
      if (end == s.size()) break;
      start = end + split_.size();
    }
  }

 private:
  // Emits `in` with `as_` set to `s` upper-cased; nothing if `s` is empty.
  void EmitUpper(const Event& in, std::string_view s, Emitter& out) {
    if (s.empty()) return;
    char* upper = out.Allocate(s.size());  // valid until the record is written
    for (size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      upper[i] = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    }
    // The event's fields, copied into a vector this operator reuses: after
    // the first few events, no allocation.
    fields_.assign(in.begin(), in.end());
    const Value value = Value::String({upper, s.size()});
    bool replaced = false;
    for (Field& f : fields_) {
      if (f.name.view() == as_) {
        f.value = value;
        replaced = true;
        break;
      }
    }
    if (!replaced) fields_.push_back({as_, value});  // as_ lives as long as the operator
    out.Emit(fields_.data(), fields_.size());
  }

  const std::string field_, as_, split_;
  std::string not_a_string_;
  std::vector<Field> fields_;
};

}  // namespace

SLUICE_PLUGIN_DEFINE_VERSION()

extern "C" sluice::plugin::Operator* sluice_plugin_v1_create(const sluice::plugin::Config* config, char* error,
                                                             size_t error_len) {
  for (const sluice::plugin::ConfigEntry& e : *config) {
    const std::string_view key = e.key;
    if (key != "field" && key != "as" && key != "split") {
      sluice::plugin::WriteError(error, error_len,
                                 "unknown config key '" + std::string(key) + "' (expected field, as, split)");
      return nullptr;
    }
  }
  const std::string_view field = config->Get("field");
  if (field.empty()) {
    sluice::plugin::WriteError(error, error_len, "config needs 'field': the string field to upper-case");
    return nullptr;
  }
  const std::string_view as = config->Get("as", field);
  if (as.empty()) {
    sluice::plugin::WriteError(error, error_len, "config 'as' is empty: name the output field, or leave it out");
    return nullptr;
  }
  // No exception may leave create().
  try {
    return new Uppercase(std::string(field), std::string(as), std::string(config->Get("split")));
  } catch (...) {
    sluice::plugin::WriteError(error, error_len, "out of memory");
    return nullptr;
  }
}
