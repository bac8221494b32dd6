//! Which image builder a build uses: BuildKit where the engine serves it,
//! else the classic builder (`DRYDOCK_BUILDER` decides otherwise).

/// The environment variable that picks the builder: `auto` (default),
/// `buildkit` or `classic`.
pub const BUILDER_ENV: &str = "DRYDOCK_BUILDER";

/// The oldest Engine API that serves BuildKit sessions outside experimental mode.
const MIN_BUILDKIT_API: (u32, u32) = (1, 39);

/// The image builder an [`Engine`](super::Engine) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Builder {
    /// The classic (legacy) builder: every stage before the target runs.
    Classic = 1,
    /// BuildKit: only the stages the target needs run.
    BuildKit = 2,
}

impl Builder {
    pub(super) fn from_u8(value: u8) -> Self {
        if value == Builder::BuildKit as u8 {
            Builder::BuildKit
        } else {
            Builder::Classic
        }
    }
}

impl std::fmt::Display for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Builder::Classic => "classic",
            Builder::BuildKit => "buildkit",
        })
    }
}

/// What `DRYDOCK_BUILDER` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuilderPreference {
    /// BuildKit when the daemon offers it, else classic.
    #[default]
    Auto,
    /// BuildKit (classic when the daemon cannot do it, with a warning).
    BuildKit,
    /// Always the classic builder.
    Classic,
}

impl BuilderPreference {
    /// Parses `auto`, `buildkit` or `classic` (case-insensitive; empty = auto).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(BuilderPreference::Auto),
            "buildkit" => Some(BuilderPreference::BuildKit),
            "classic" => Some(BuilderPreference::Classic),
            _ => None,
        }
    }

    /// Reads [`BUILDER_ENV`]; an unknown value is warned about and means `auto`.
    pub fn from_env() -> Self {
        let value = std::env::var(BUILDER_ENV).unwrap_or_default();
        Self::parse(&value).unwrap_or_else(|| {
            tracing::warn!(
                "{BUILDER_ENV}={value:?} is not one of auto, buildkit, classic: using auto"
            );
            BuilderPreference::Auto
        })
    }
}

/// Picks the builder for a daemon with Engine API `api_version` running on
/// `os` (`linux`, `windows`; empty when unknown).
///
/// The daemon's ping carries a `Builder-Version` header that tells its
/// default builder, but bollard does not expose response headers; the
/// Docker CLI's own switch `DOCKER_BUILDKIT=0` is honoured instead in `auto`
/// mode.
pub fn choose_builder(preference: BuilderPreference, api_version: &str, os: &str) -> Builder {
    if preference == BuilderPreference::Classic {
        return Builder::Classic;
    }
    let api_ok = parse_api(api_version).is_some_and(|v| v >= MIN_BUILDKIT_API);
    let os_ok = !os.eq_ignore_ascii_case("windows");
    if !(api_ok && os_ok) {
        if preference == BuilderPreference::BuildKit {
            tracing::warn!(
                "{BUILDER_ENV}=buildkit, but the engine (API {api_version}, {os}) has no BuildKit: \
                 using the classic builder"
            );
        }
        return Builder::Classic;
    }
    let disabled = std::env::var("DOCKER_BUILDKIT")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false"));
    if preference == BuilderPreference::Auto && disabled {
        return Builder::Classic;
    }
    Builder::BuildKit
}

fn parse_api(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_parses_and_chooses() {
        assert_eq!(BuilderPreference::parse(""), Some(BuilderPreference::Auto));
        assert_eq!(
            BuilderPreference::parse("BuildKit"),
            Some(BuilderPreference::BuildKit)
        );
        assert_eq!(
            BuilderPreference::parse("classic"),
            Some(BuilderPreference::Classic)
        );
        assert_eq!(BuilderPreference::parse("v2"), None);
        // (preference, api, os, builder) — DOCKER_BUILDKIT is not set in unit tests.
        for (preference, api, os, builder) in [
            (
                BuilderPreference::Classic,
                "1.41",
                "linux",
                Builder::Classic,
            ),
            (
                BuilderPreference::BuildKit,
                "1.41",
                "linux",
                Builder::BuildKit,
            ),
            (
                BuilderPreference::BuildKit,
                "1.38",
                "linux",
                Builder::Classic,
            ),
            (
                BuilderPreference::BuildKit,
                "1.41",
                "windows",
                Builder::Classic,
            ),
            (BuilderPreference::BuildKit, "", "linux", Builder::Classic),
            (BuilderPreference::BuildKit, "1.53", "", Builder::BuildKit),
        ] {
            assert_eq!(
                choose_builder(preference, api, os),
                builder,
                "{preference:?} {api} {os}"
            );
        }
    }
}
