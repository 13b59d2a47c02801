// The Sluice plugin interface, version 1: custom operators in C++.
//
// This is the one header a plugin author compiles against (installed as
// <sluice/plugin_api.h> by `cmake --install`; in the source tree it is
// lib/engine/plugin_api.h). It depends on nothing but the C++17 standard
// headers below. Module sluice::engine owns it; lib/engine/plugin_loader.cc
// loads plugins and lib/engine/pipeline.cc runs them. User's guide:
// docs/jobs.md, "Plugins".
//
// A plugin is a shared library (`g++ -shared -fPIC`) that exports two
// C-linkage functions:
//
//   int sluice_plugin_api_version(void);      // SLUICE_PLUGIN_DEFINE_VERSION()
//   sluice::plugin::Operator* sluice_plugin_v1_create(
//       const sluice::plugin::Config* config, char* error, size_t error_len);
//
// A worker dlopen()s the library at the job's `plugin.path` once per process
// and never unloads it, checks that sluice_plugin_api_version() equals the
// version it was built with (kSluicePluginApiVersion), then calls create()
// once per Pipeline: one Operator per task-running thread. create() returns
// the operator, or nullptr after writing a NUL-terminated reason (at most
// error_len bytes, WriteError() below) — the job's task then fails with it.
//
// Per event the worker calls Operator::Process(in, out). The operator emits
// zero or more events through `out`: none filters the event out, one maps
// it, several flat_map it. Every input event of every record goes through
// Process; there is no per-block or end-of-stream call in version 1.
//
// Lifetimes (nothing is copied, so there is no heap allocation per event):
//   - `in` and every string it views are valid during the Process call only.
//   - Emit() copies the Field array, not the strings. A string in an emitted
//     field must be one of: a view into `in`, memory the operator owns for
//     its whole life (e.g. a name from its config, copied in create()), or
//     memory from out.Allocate()/out.Copy(), which stays valid until the
//     record's output is written and is reused after.
//   - Config and its strings are valid during create() only.
//
// Threads: a Pipeline runs on one thread, so Process is never called
// concurrently on one Operator. create() may run on several threads at once
// (each making its own Operator), so it must not touch unguarded globals.
//
// Rules: do not let an exception escape Process or create() (the worker
// makes a record whose Process throws a dead letter, but do not rely on
// it); do not keep `in`/`out` past the call; do not call exit() or change
// process-wide state (signals, locale, cwd). The ABI: plain structs,
// virtual functions and C-linkage entry points; no standard library type
// crosses the boundary (std::string_view appears in inline helpers only),
// so a plugin needs a C++17 compiler for the platform's C++ ABI, not the
// workers' compiler or standard library (tested: g++ 12, clang++ 14).
//
// Versioning: the layout of every type here and the meaning of every call
// is fixed for version 1. A change that breaks either makes version 2, with
// a new create symbol (sluice_plugin_v2_create); a worker refuses a plugin
// whose sluice_plugin_api_version() it does not support, naming both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#define SLUICE_PLUGIN_EXPORT __attribute__((visibility("default")))

namespace sluice::plugin {

inline constexpr int kSluicePluginApiVersion = 1;

// A string: `size` bytes at `data`, not NUL-terminated (may hold NULs).
// A view, like std::string_view, to and from which it converts (so does
// anything that converts to std::string_view: std::string, literals).
struct Str {
  const char* data = "";
  size_t size = 0;

  constexpr Str() = default;
  constexpr Str(const char* d, size_t n) : data(d), size(n) {}
  constexpr Str(std::string_view s) : data(s.data()), size(s.size()) {}  // NOLINT: implicit on purpose
  template <typename T, typename = std::enable_if_t<std::is_convertible_v<const T&, std::string_view>>>
  constexpr Str(const T& s) : Str(std::string_view(s)) {}  // NOLINT
  constexpr std::string_view view() const { return {data, size}; }
  constexpr operator std::string_view() const { return view(); }  // NOLINT
};

// A field's value: what a parsed event holds (JSON null, booleans, numbers
// as double, strings; a JSON array arrives as its JSON text, a nested
// object as fields "a.b").
enum class Type : int32_t { kNull = 0, kBool = 1, kNumber = 2, kString = 3 };

struct Value {
  Type type = Type::kNull;
  bool boolean = false;  // when kBool
  double number = 0;     // when kNumber
  Str string;            // when kString

  static constexpr Value Null() { return {}; }
  static constexpr Value Bool(bool b) {
    Value v;
    v.type = Type::kBool;
    v.boolean = b;
    return v;
  }
  static constexpr Value Number(double d) {
    Value v;
    v.type = Type::kNumber;
    v.number = d;
    return v;
  }
  static constexpr Value String(Str s) {
    Value v;
    v.type = Type::kString;
    v.string = s;
    return v;
  }
  constexpr bool is_null() const { return type == Type::kNull; }
  constexpr bool is_string() const { return type == Type::kString; }
};

struct Field {
  Str name;
  Value value;
};

// One event: its fields in order (the order they are written out in).
struct Event {
  const Field* fields = nullptr;
  size_t size = 0;

  const Field* begin() const { return fields; }
  const Field* end() const { return fields + size; }
  // The first field called `name`, or nullptr.
  const Field* Find(std::string_view name) const {
    for (const Field& f : *this) {
      if (f.name.view() == name) return &f;
    }
    return nullptr;
  }
  // Its value; null when missing.
  Value Get(std::string_view name) const {
    const Field* f = Find(name);
    return f == nullptr ? Value::Null() : f->value;
  }
};

// Where an operator's output goes. Owned by the worker; valid during one
// Process call. Not thread-safe (it need not be: see "Threads").
class Emitter {
 public:
  // Emits one event made of fields[0..n). The array is copied, so it may be
  // reused right after; the strings are not (see "Lifetimes").
  virtual void Emit(const Field* fields, size_t n) = 0;
  // `n` bytes valid until this record's output is written. Never null.
  virtual char* Allocate(size_t n) = 0;
  // Makes the record a dead letter: counted, `reason` kept for the worker's
  // log, no output from the record at all (events emitted before included).
  virtual void Reject(Str reason) = 0;

  void Emit(const Event& e) { Emit(e.fields, e.size); }
  // `s` copied into Allocate()d memory.
  Str Copy(std::string_view s) {
    char* p = Allocate(s.size());
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    return {p, s.size()};
  }

 protected:
  ~Emitter() = default;
};

// A custom operator. One instance per Pipeline; see "Threads".
class Operator {
 public:
  virtual ~Operator() = default;
  // Called for each event; emits zero or more events through `out`.
  virtual void Process(const Event& in, Emitter& out) = 0;
};

// The job file's `plugin.config` map, entries sorted by key.
struct ConfigEntry {
  Str key;
  Str value;
};

struct Config {
  const ConfigEntry* entries = nullptr;
  size_t size = 0;
  Str path;  // the library, as the job file names it
  Str job;   // the job's name, for messages
  int line = 0;  // the operator's line in the job file

  const ConfigEntry* begin() const { return entries; }
  const ConfigEntry* end() const { return entries + size; }
  // The entry for `key`, or nullptr.
  const ConfigEntry* Find(std::string_view key) const {
    for (const ConfigEntry& e : *this) {
      if (e.key.view() == key) return &e;
    }
    return nullptr;
  }
  std::string_view Get(std::string_view key, std::string_view fallback = {}) const {
    const ConfigEntry* e = Find(key);
    return e == nullptr ? fallback : e->value.view();
  }
};

// ---- Stateful operators: `update_state: {plugin: path}` ----
//
// A library used by `update_state` exports, instead of (or besides)
// sluice_plugin_v1_create:
//
//   sluice::plugin::StateUpdater* sluice_plugin_v1_create_state_updater(
//       const sluice::plugin::Config* config, char* error, size_t error_len);
//
// (an addition to version 1: a library without it is still a version-1
// operator plugin). The worker calls it once per reduce task. Per batch and
// key, the reduce task calls Update once, in key order:
//   - for a key with events in the batch: `events` are all of them, in the
//     order the sources hold them (map task by map task, each in offset
//     order), `state` is the key's state as of the previous batch (empty
//     size for none), timed_out false;
//   - for a key whose state was not updated for the job's `timeout` (in
//     batch time): no events, its last state, timed_out true; the state is
//     dropped after the call whatever it does.
// Update emits output events (each becomes a JSON line with the key first,
// {"key":[...],<fields>}) and sets the key's new state with out.SetState
// (the bytes are copied; an encoding of the plugin's own choosing) or drops
// it with out.ClearState(); no call keeps the state as it was. The state is
// stored by Sluice, versioned by batch and copied to a second worker, so a
// re-run of a batch calls Update with the same arguments: Update must be a
// function of them (no clock, no randomness, no memory between calls) for
// exactly-once output. out.Reject(reason) fails the batch's reduce task
// (after max_task_failures attempts the job stops FAILED with the reason).
// Lifetimes as for Operator: `key`, `events`, `state` and their strings are
// valid during the call; emitted strings as for Process.

// A key: the values of the job's key_by fields, in order.
struct Key {
  const Value* parts = nullptr;
  size_t size = 0;
  const Value* begin() const { return parts; }
  const Value* end() const { return parts + size; }
};

class StateEmitter : public Emitter {
 public:
  virtual void SetState(Str state) = 0;
  virtual void ClearState() = 0;

 protected:
  ~StateEmitter() = default;
};

class StateUpdater {
 public:
  virtual ~StateUpdater() = default;
  virtual void Update(const Key& key, const Event* events, size_t n, Str state, bool timed_out,
                      StateEmitter& out) = 0;
};

// Writes `message` NUL-terminated into create()'s error buffer, cut to fit.
inline void WriteError(char* error, size_t error_len, std::string_view message) {
  if (error == nullptr || error_len == 0) return;
  const size_t n = message.size() < error_len - 1 ? message.size() : error_len - 1;
  if (n > 0) std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

}  // namespace sluice::plugin

// The entry points (declared here so that a wrong signature does not
// compile): the version, and an operator's or a state updater's create (or
// both).
extern "C" {
SLUICE_PLUGIN_EXPORT int sluice_plugin_api_version(void);
SLUICE_PLUGIN_EXPORT sluice::plugin::Operator* sluice_plugin_v1_create(const sluice::plugin::Config* config,
                                                                       char* error, size_t error_len);
SLUICE_PLUGIN_EXPORT sluice::plugin::StateUpdater* sluice_plugin_v1_create_state_updater(
    const sluice::plugin::Config* config, char* error, size_t error_len);
}

// Defines sluice_plugin_api_version() as the version this header describes.
#define SLUICE_PLUGIN_DEFINE_VERSION()                  \
  extern "C" SLUICE_PLUGIN_EXPORT int sluice_plugin_api_version(void) { \
    return ::sluice::plugin::kSluicePluginApiVersion;   \
  }
