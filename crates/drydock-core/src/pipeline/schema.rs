//! The JSON Schema of the pipeline file, for editors (VS Code's YAML
//! extension, JetBrains IDEs, `check-jsonschema`): completion, hover text and
//! checks as you type.
//!
//! It describes the YAML **input** (`docs/pipeline-format.md`), not the
//! validated model ([`super::Pipeline`] is an output: `command` and `script`
//! become one `StepRun`, builds are resolved…), so it is generated from the
//! types below, which mirror the file key by key. A unit test keeps them
//! equal to the validator's key lists, and the CLI's tests validate every
//! pipeline fixture against the generated schema with a real validator.
//!
//! What a schema can say, it says: keys (unknown ones refused), types,
//! required keys, name and duration patterns, `version: 1`, limits on
//! lists. What needs the file system or cross-references (paths exist,
//! builds and services named exist, `needs` cycles, one of `image`/`build`)
//! only `drydock validate` checks. String values may hold `${NAME}`
//! interpolation: a pattern on a value accepts any value that contains `${`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use schemars::JsonSchema;

use super::limits;

/// Where the schema says it lives (its `$id`): the copy shipped in the repository.
pub const SCHEMA_ID: &str = "https://drydock.invalid/schema/pipeline.schema.json";

/// A pattern for a string value that may also be interpolated (`${NAME}`).
macro_rules! interpolated {
    ($pattern:literal) => {
        concat!(r"^(?:", $pattern, r"|.*\$\{.*)$")
    };
}

/// A pipeline file (version 1): see docs/pipeline-format.md.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "drydock pipeline (version 1)")]
struct PipelineFile {
    /// The format version: the integer 1.
    #[schemars(range(min = 1, max = 1))]
    version: u8,
    /// The pipeline's name, used in labels and tags: [a-z0-9][a-z0-9_.-]*, at most 63 characters.
    #[schemars(regex(pattern = interpolated!(r"[a-z0-9][a-z0-9_.-]{0,62}")))]
    name: String,
    /// One build context whose Dockerfile stages are builds of the same name (`build: dev` = the stage `FROM … AS dev`).
    build: Option<BuildBlock>,
    /// Named builds: any Dockerfile, its last stage unless `target` is given.
    #[schemars(extend("propertyNames" = { "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$" }))]
    builds: Option<BTreeMap<String, NamedBuild>>,
    /// Secrets by name: where each value comes from (never the value itself).
    #[schemars(extend("propertyNames" = { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" }))]
    secrets: Option<BTreeMap<String, SecretSource>>,
    /// Sidecars by name (the name is their network alias).
    #[schemars(
        extend("propertyNames" = { "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$" }),
        extend("maxProperties" = limits::MAX_SERVICES)
    )]
    services: Option<BTreeMap<String, Service>>,
    /// Tiers, run in order; the first failing tier stops the run.
    #[schemars(length(min = 1, max = limits::MAX_TIERS))]
    tiers: Vec<Tier>,
    /// What a green run tags.
    release: Option<Release>,
    /// Default `reuse:` of every step that gives none (see the step's `reuse`).
    reuse: Option<ReuseValue>,
}

/// Whether a stored result of the step may stand in for running it: `true`
/// (a passed result, whatever the network), `false` (always run) or
/// `always` (failed results too). Without one, only steps with `network:
/// false` and no writable mount reuse a passed result.
#[derive(JsonSchema)]
#[serde(untagged)]
enum ReuseValue {
    /// true or false.
    Flag(bool),
    /// `always`.
    Always(ReuseAlways),
}

/// `always`: failed results are reused too.
#[derive(JsonSchema)]
enum ReuseAlways {
    /// Reuse any stored result.
    #[serde(rename = "always")]
    Always,
}

/// A string, or a list of strings.
#[derive(JsonSchema)]
#[serde(untagged)]
enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// Environment variables (or build args): names [A-Za-z_][A-Za-z0-9_]*, string values (quote numbers: "1").
#[derive(JsonSchema)]
#[schemars(extend(
    "propertyNames" = { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" },
    "maxProperties" = limits::MAX_ENV_ENTRIES
))]
struct Env(BTreeMap<String, String>);

/// An argv: a non-empty list of strings.
#[derive(JsonSchema)]
struct Argv(#[schemars(length(min = 1, max = limits::MAX_ARGS))] Vec<String>);

/// A duration: 250ms, 10s, 2m, 1h, 1m30s (units in that order, each once).
/// (Numbers of at most 12 digits: drydock refuses durations that overflow,
/// and no real one needs more.)
#[derive(JsonSchema)]
struct Duration(
    #[schemars(
        length(min = 1),
        regex(pattern = interpolated!(r"(?:[0-9]{1,12}h)?(?:[0-9]{1,12}m)?(?:[0-9]{1,12}s)?(?:[0-9]{1,12}ms)?"))
    )]
    String,
);

/// An absolute container path.
#[derive(JsonSchema)]
struct ContainerPath(#[schemars(regex(pattern = interpolated!(r"/.*")))] String);

/// A tier, step or service name, or a build name: [A-Za-z0-9][A-Za-z0-9_.-]*.
#[derive(JsonSchema)]
struct Name(#[schemars(regex(pattern = interpolated!(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")))] String);

/// A user: name, uid, name:group or uid:gid (as `docker run --user`).
#[derive(JsonSchema)]
#[serde(untagged)]
enum User {
    /// `app`, `1000:1000`.
    Text(String),
    /// `1000`.
    Uid(u32),
}

/// `on_success` (default), `on_failure` or `always`.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum When {
    /// Runs while nothing has failed.
    OnSuccess,
    /// Runs once something failed.
    OnFailure,
    /// Runs whatever happened, also after a cancel.
    Always,
}

/// The version-1 `build:` block.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct BuildBlock {
    /// The build context: a folder inside the repository.
    context: String,
    /// The Dockerfile, relative to the context (default "Dockerfile").
    dockerfile: Option<String>,
    /// Build args (string values, interpolated).
    args: Option<Env>,
    /// Hand the run's CA bundle, proxies and pip index settings to the build (default true).
    trust: Option<bool>,
    /// Secrets the build may mount (`RUN --mount=type=secret,id=NAME`).
    secrets: Option<Vec<String>>,
}

/// An entry of `builds:`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct NamedBuild {
    /// The build context: a folder inside the repository.
    context: String,
    /// The Dockerfile, relative to the context (default "Dockerfile").
    dockerfile: Option<String>,
    /// The stage to build (default: the last one, as `docker build`).
    target: Option<Name>,
    /// Build args (string values, interpolated).
    args: Option<Env>,
    /// Hand the run's CA bundle, proxies and pip index settings to the build (default true).
    trust: Option<bool>,
    /// Secrets the build may mount.
    secrets: Option<Vec<String>>,
}

/// Where a secret's value comes from: exactly one of `env` or `file`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [ { "required": ["env"] }, { "required": ["file"] } ]))]
struct SecretSource {
    /// An environment variable of the process running drydock.
    env: Option<String>,
    /// A file outside the repository: absolute, or starting with ~/.
    file: Option<String>,
    /// How steps get it: `env` (a variable, the default) or `file` (/run/secrets/NAME).
    #[serde(rename = "as")]
    expose: Option<Expose>,
}

/// How a step gets a secret.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Expose {
    /// An environment variable.
    Env,
    /// A read-only file under /run/secrets.
    File,
}

/// A sidecar: exactly one of `image`, `build` or `compose`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct Service {
    /// An image reference ([host[:port]/]name[:tag][@digest]).
    image: Option<String>,
    /// The name of a build.
    build: Option<Name>,
    /// A service of the repository's compose file: its name, or {service, file}.
    compose: Option<ComposeSource>,
    /// Environment variables (win over the compose file's and env files').
    env: Option<Env>,
    /// Dotenv file(s), repository paths, read first.
    env_file: Option<OneOrMany>,
    /// Argv replacing the image's CMD.
    command: Option<Argv>,
    /// Argv replacing the image's ENTRYPOINT ([] clears it).
    entrypoint: Option<Vec<String>>,
    /// The user it runs as.
    user: Option<User>,
    /// Working directory (absolute).
    workdir: Option<ContainerPath>,
    /// Repository paths bound in: "repo/path:/container/path[:ro|:rw]".
    mounts: Option<Vec<String>>,
    /// Readiness probe.
    ready: Option<Ready>,
}

/// `compose: <service>` or `compose: {service, file}`.
#[derive(JsonSchema)]
#[serde(untagged)]
enum ComposeSource {
    /// The service's name in compose.yaml / docker-compose.yml.
    Name(String),
    /// A service of another compose file.
    File(ComposeRef),
}

/// A service of a given compose file.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct ComposeRef {
    /// The service's name.
    service: String,
    /// The compose file, a repository path (default compose.yaml / docker-compose.yml).
    file: Option<String>,
}

/// A readiness probe: exactly one of `postgres`, `exec` or `healthcheck`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    { "required": ["postgres"] }, { "required": ["exec"] }, { "required": ["healthcheck"] }
]))]
struct Ready {
    /// Log in over the run network and run `SELECT 1` (psql).
    postgres: Option<PostgresProbe>,
    /// An argv run inside the service; exit 0 = ready.
    exec: Option<Argv>,
    /// The image's HEALTHCHECK (only `true`).
    #[schemars(extend("const" = true))]
    healthcheck: Option<bool>,
    /// Deadline (default 60s).
    timeout: Option<Duration>,
    /// First backoff step (default 250ms, doubles up to 2s).
    interval: Option<Duration>,
}

/// A PostgreSQL login probe.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct PostgresProbe {
    /// The user to log in as.
    user: String,
    /// Its password.
    password: Option<String>,
    /// The database to connect to.
    database: String,
}

/// A tier: `build` or `steps` or both.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct Tier {
    /// The tier's name, unique.
    name: Name,
    /// Builds reported (and awaited) at the start of this tier.
    build: Option<Vec<Name>>,
    /// Services this tier waits to be ready.
    services: Option<Vec<Name>>,
    /// Steps, run concurrently.
    #[schemars(length(max = limits::MAX_STEPS_PER_TIER))]
    steps: Option<Vec<Step>>,
    /// The default `when` of its steps.
    when: Option<When>,
}

/// A step: exactly one of `build` or `image`; `command`, `script` or a non-empty `entrypoint`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct Step {
    /// The step's name, unique within the tier.
    name: Name,
    /// The name of a build to run in.
    build: Option<Name>,
    /// An image reference to run in.
    image: Option<String>,
    /// An argv replacing the image's CMD.
    command: Option<Argv>,
    /// Shell lines run in order by one `sh` with `set -e`, each echoed first.
    #[schemars(length(min = 1))]
    script: Option<Vec<String>>,
    /// Argv replacing the image's ENTRYPOINT ([] clears it).
    entrypoint: Option<Vec<String>>,
    /// The user it runs as.
    user: Option<User>,
    /// Environment variables (win over env files).
    env: Option<Env>,
    /// Dotenv file(s), repository paths, read first.
    env_file: Option<OneOrMany>,
    /// Working directory (absolute).
    workdir: Option<ContainerPath>,
    /// Repository paths bound in: "repo/path:/container/path[:ro|:rw]" (read-only by default).
    mounts: Option<Vec<String>>,
    /// Writable copies: "repo/path:/container/path", copied in, never written back.
    copy: Option<Vec<String>>,
    /// Timeout (default 10m).
    timeout: Option<Duration>,
    /// A JUnit XML report to collect (absolute container path).
    junit: Option<ContainerPath>,
    /// More files or folders to collect (absolute container paths).
    collect: Option<Vec<ContainerPath>>,
    /// Network access (default true).
    network: Option<bool>,
    /// Steps (`name` or `tier/name`) that must pass before it starts.
    needs: Option<Vec<String>>,
    /// When it runs (default: its tier's, else on_success).
    when: Option<When>,
    /// More attempts when it fails or times out (0–5).
    #[schemars(range(min = 0, max = 5))]
    retry: Option<u8>,
    /// A failure is a warning, not a failure of the run.
    allow_failure: Option<bool>,
    /// One step per combination of these variables' values.
    #[schemars(extend("propertyNames" = { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" }))]
    matrix: Option<BTreeMap<String, MatrixValues>>,
    /// Secrets it gets (names declared under `secrets:`).
    secrets: Option<Vec<String>>,
    /// Cache paths (absolute) backed by volumes shared across runs.
    cache: Option<Vec<ContainerPath>>,
    /// Whether a stored result may stand in for running it (overrides the pipeline's `reuse`).
    reuse: Option<ReuseValue>,
}

/// The values of one matrix variable: a non-empty list of strings.
#[derive(JsonSchema)]
struct MatrixValues(#[schemars(length(min = 1))] Vec<String>);

/// What a green run tags.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
struct Release {
    /// The build that ships.
    target: Name,
    /// The image repository name (no tag).
    name: String,
    /// The channel tag moved to the new image.
    #[schemars(regex(pattern = interpolated!(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")))]
    channel: String,
    /// A registry to push the tags to: host[:port][/namespace], no scheme.
    registry: Option<String>,
}

/// Removes `null` from what a schema accepts (schemars makes `Option`
/// fields nullable).
fn drop_null(schema: &mut schemars::Schema) {
    use serde_json::Value;
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            schema.insert("type".into(), only);
        }
    }
    let any_of = schema.get("anyOf").and_then(Value::as_array).map(|items| {
        items
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) != Some("null"))
            .cloned()
            .collect::<Vec<_>>()
    });
    if let Some(mut items) = any_of {
        schema.remove("anyOf");
        if items.len() == 1 {
            if let Value::Object(only) = items.remove(0) {
                for (k, v) in only {
                    schema.insert(k, v);
                }
            }
        } else {
            schema.insert("anyOf".into(), Value::Array(items));
        }
    }
}

/// The JSON Schema (draft 2020-12) of a pipeline file, as `drydock schema
/// pipeline` prints it and `docs/schema/pipeline.schema.json` ships it.
pub fn pipeline_schema() -> serde_json::Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    // An absent key is fine; `key:` with nothing (null) is refused, as the
    // validator refuses it.
    settings
        .transforms
        .push(Box::new(schemars::transform::RecursiveTransform(drop_null)));
    let mut schema = settings
        .into_generator()
        .into_root_schema_for::<PipelineFile>()
        .to_value();
    if let Some(root) = schema.as_object_mut() {
        root.insert("$id".into(), SCHEMA_ID.into());
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use super::*;

    /// The properties of the schema's object `name` (a `$defs` entry, or
    /// the root for `PipelineFile`).
    fn properties(schema: &serde_json::Value, name: &str) -> Vec<String> {
        let object = if name == "PipelineFile" {
            schema
        } else {
            &schema["$defs"][name]
        };
        let mut keys: Vec<String> = object["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no properties"))
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        keys.sort();
        keys
    }

    /// Every object of the schema has exactly the keys the validator
    /// accepts, and refuses others: the schema cannot drift from the format.
    #[test]
    fn every_object_has_exactly_the_validators_keys() {
        let schema = pipeline_schema();
        let table: &[(&str, &[&str])] = &[
            ("PipelineFile", validate::ROOT_KEYS),
            ("BuildBlock", validate::BUILD_KEYS),
            ("NamedBuild", validate::NAMED_BUILD_KEYS),
            ("Service", validate::SERVICE_KEYS),
            ("Ready", validate::READY_KEYS),
            ("PostgresProbe", validate::POSTGRES_KEYS),
            ("Tier", validate::TIER_KEYS),
            ("Step", validate::STEP_KEYS),
            ("Release", validate::RELEASE_KEYS),
            ("SecretSource", validate::SECRET_KEYS),
            ("ComposeRef", validate::COMPOSE_KEYS),
        ];
        for (name, keys) in table {
            assert_eq!(properties(&schema, name), sorted(keys), "{name}");
            let object = if *name == "PipelineFile" {
                &schema
            } else {
                &schema["$defs"][name]
            };
            assert_eq!(object["additionalProperties"], false, "{name}");
        }
        // No object escapes the table.
        for (name, def) in schema["$defs"].as_object().unwrap() {
            if def.get("properties").is_some() {
                assert!(
                    table.iter().any(|(n, _)| n == name),
                    "{name} is not checked against a key list"
                );
            }
        }
    }

    #[test]
    fn nothing_is_nullable_and_documentation_is_carried() {
        let text = serde_json::to_string(&pipeline_schema()).unwrap();
        assert!(!text.contains("\"null\""), "{text}");
        assert!(text.contains("Timeout (default 10m)"));
    }
}
