// A shared library that is not a Sluice plugin: it exports neither entry
// point of lib/engine/plugin_api.h (plugin_test's "missing symbol" case).
extern "C" __attribute__((visibility("default"))) int not_a_sluice_plugin(void) { return 1; }
