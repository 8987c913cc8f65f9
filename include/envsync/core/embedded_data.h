#ifndef ENVSYNC_CORE_EMBEDDED_DATA_H_
#define ENVSYNC_CORE_EMBEDDED_DATA_H_

namespace envsync {

// The module manifest shipped with envsync (data/modules.toml), used when the config names
// no manifest of its own.
const char* EmbeddedManifest();

// The platform's reference schema (data/schema.sql, a copy of the platform's own), used by
// `envsync demo init` to build environments.
const char* EmbeddedSchema();

// The name under which the embedded manifest is reported in error messages.
inline constexpr const char* kEmbeddedManifestName = "data/modules.toml (built in)";

}  // namespace envsync

#endif  // ENVSYNC_CORE_EMBEDDED_DATA_H_
