// Which librdkafka properties a job or a source may set.
//
// Module sluice::common owns the rule, so that every place that hands a
// user's property to librdkafka (lib/source's consumers and settings check,
// lib/sink's producer, lib/engine's job validation) applies the same one.
// Some properties make librdkafka run code on the host: plugin.library.paths
// dlopen()s libraries, sasl.kerberos.kinit.cmd runs a shell command,
// ssl.engine.location and ssl.providers load OpenSSL engines and providers.
// Anyone who may submit a job could then run code as the service user, past
// plugin-dirs (docs/security.md "Confined user code and output"), so they
// are refused wherever they appear.
#pragma once

#include <string_view>

#include "lib/common/status.h"

namespace sluice {

// OK, or INVALID_ARGUMENT naming `key` and why it is refused; `where` names
// the setting in the message ("sink.kafka.properties").
[[nodiscard]] Status CheckKafkaProperty(std::string_view key, std::string_view where);

}  // namespace sluice
