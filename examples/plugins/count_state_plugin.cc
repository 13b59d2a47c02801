// count_state_plugin: an example update_state plugin (docs/jobs.md, "Keys,
// windows and state"; lib/engine/plugin_api.h, "Stateful operators").
//
//   operators:
//     - parse: {format: json}
//     - key_by: user
//     - update_state:
//         plugin: count_state_plugin   # count_state_plugin.so in the workers' plugin-dirs
//         config: {field: amount}
//         timeout: 10m
//
// Keeps per key the number of events so far and the sum of the numeric field
// `field` (optional; a missing or non-numeric value adds nothing), as its
// state: 16 bytes, an int64 count then a double sum. Per batch it emits for
// each key with events {"events":<so far>,"batch_events":<this batch>,
// "sum":<so far>}; when a key times out, {"events":...,"sum":...,
// "expired":true}. A state it cannot read (not 16 bytes) rejects the key: the
// reduce task fails rather than start the key again from zero.
//
// Built with nothing but the plugin header (<sluice> the source tree):
//   g++ -std=c++17 -O2 -shared -fPIC -fvisibility=hidden -I<sluice> count_state_plugin.cc -o count_state_plugin.so
#include <cstring>
#include <string>
#include <string_view>

#include "lib/engine/plugin_api.h"

namespace {

using sluice::plugin::Event;
using sluice::plugin::Field;
using sluice::plugin::Key;
using sluice::plugin::StateEmitter;
using sluice::plugin::Str;
using sluice::plugin::Value;

class CountState final : public sluice::plugin::StateUpdater {
 public:
  explicit CountState(std::string field) : field_(std::move(field)) {}

  void Update(const Key& /*key*/, const Event* events, size_t n, Str state, bool timed_out,
              StateEmitter& out) override {
    int64_t count = 0;
    double sum = 0;
    if (state.size != 0) {
      if (state.size != 16) {
        out.Reject("its state is not 16 bytes: written by another plugin?");
        return;
      }
      std::memcpy(&count, state.data, 8);
      std::memcpy(&sum, state.data + 8, 8);
    }
    if (timed_out) {
      const Field fields[] = {{"events", Value::Number(static_cast<double>(count))},
                              {"sum", Value::Number(sum)},
                              {"expired", Value::Bool(true)}};
      out.Emit(fields, 3);
      return;  // the state goes whatever this call does
    }
    for (size_t i = 0; i < n; ++i) {
      ++count;
      if (!field_.empty()) {
        const Value v = events[i].Get(field_);
        if (v.type == sluice::plugin::Type::kNumber) sum += v.number;
      }
    }
    char bytes[16];
    std::memcpy(bytes, &count, 8);
    std::memcpy(bytes + 8, &sum, 8);
    out.SetState(Str(bytes, 16));  // copied
    const Field fields[] = {{"events", Value::Number(static_cast<double>(count))},
                            {"batch_events", Value::Number(static_cast<double>(n))},
                            {"sum", Value::Number(sum)}};
    out.Emit(fields, 3);
  }

 private:
  const std::string field_;
};

}  // namespace

SLUICE_PLUGIN_DEFINE_VERSION()

extern "C" sluice::plugin::StateUpdater* sluice_plugin_v1_create_state_updater(const sluice::plugin::Config* config,
                                                                               char* error, size_t error_len) {
  for (const sluice::plugin::ConfigEntry& e : *config) {
    if (e.key.view() != "field") {
      sluice::plugin::WriteError(error, error_len, "unknown config key '" + std::string(e.key.view()) +
                                                       "' (expected field)");
      return nullptr;
    }
  }
  try {
    return new CountState(std::string(config->Get("field")));
  } catch (...) {
    sluice::plugin::WriteError(error, error_len, "out of memory");
    return nullptr;
  }
}
