//! Deployment versions: languages, scaling and retention settings, with
//! every documented default and bound. The instance types a version may
//! pick are in `instance_types`.

use serde::Deserialize;

use crate::deployment::nullable;
use crate::environment::{environment_name, language_of_environment};
use crate::instance_types::{InstanceType, InstanceTypeCatalog};
use crate::labels::{validate_labels, Labels};
use crate::names::validate_resource_name;
use crate::version_settings::{
    complete_health_check, HealthCheck, Port, RuntimeSettings, ScalingStrategy,
};
use crate::{text, ValidationError};

pub const DEFAULT_LANGUAGE: &str = "python3.7";
pub const DEFAULT_MEMORY_MIB: i32 = 2048;
pub const DEFAULT_MAXIMUM_INSTANCES: i32 = 5;
pub const MAX_INSTANCES: i32 = 1000;
pub const DEFAULT_MINIMUM_INSTANCES: i32 = 0;
pub const DEFAULT_MAXIMUM_IDLE_TIME: i32 = 300;
pub const MIN_IDLE_TIME: i32 = 10;
pub const MIN_IDLE_TIME_GPU: i32 = 300;
pub const MAX_IDLE_TIME: i32 = 3600;
pub const DEFAULT_RETENTION_TIME: i32 = 604_800;
/// One year: requests kept longer than that are an archive, not a retention.
pub const MAX_RETENTION_TIME: i32 = 31_536_000;
pub const DEFAULT_QUEUE_SIZE_EXPRESS: i32 = 100;
pub const DEFAULT_QUEUE_SIZE_BATCH: i32 = 100_000;
pub const MAX_QUEUE_SIZE: i32 = 10_000_000;
pub const MAX_NOTIFICATION_GROUP_LENGTH: usize = 64;

/// Supported languages and their human-readable descriptions.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("python3.7", "Python 3.7"),
    ("python3.8", "Python 3.8"),
    ("python3.9", "Python 3.9"),
    ("python3.10", "Python 3.10"),
    ("python3.11", "Python 3.11"),
    ("python3.7_cuda", "Python 3.7 (CUDA)"),
    ("python3.8_cuda", "Python 3.8 (CUDA)"),
    ("python3.9_cuda", "Python 3.9 (CUDA)"),
    ("python3.10_cuda", "Python 3.10 (CUDA)"),
    ("python3.11_cuda", "Python 3.11 (CUDA)"),
    ("r4.0", "R 4.0"),
];

pub fn language_description(language: &str) -> Option<&'static str> {
    LANGUAGES
        .iter()
        .find(|(name, _)| *name == language)
        .map(|(_, description)| *description)
}

pub fn is_r_language(language: &str) -> bool {
    language.starts_with('r')
}

/// At most the first 80 characters of a value an error message quotes.
pub(crate) fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetentionMode {
    None,
    Metadata,
    Full,
}

impl RetentionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionMode::None => "none",
            RetentionMode::Metadata => "metadata",
            RetentionMode::Full => "full",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(RetentionMode::None),
            "metadata" => Some(RetentionMode::Metadata),
            "full" => Some(RetentionMode::Full),
            _ => None,
        }
    }
}

/// Where a version stands: `unavailable` until a build succeeds, `building`
/// while its newest build runs, `available` once any build has succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionStatus {
    Unavailable,
    Building,
    Available,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Unavailable => "unavailable",
            VersionStatus::Building => "building",
            VersionStatus::Available => "available",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "unavailable" => Some(VersionStatus::Unavailable),
            "building" => Some(VersionStatus::Building),
            "available" => Some(VersionStatus::Available),
            _ => None,
        }
    }
}

/// Everything about a version that a client sets, complete and valid: what
/// create produces from defaults and what update produces by merging.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSettings {
    pub name: String,
    pub language: String,
    pub instance_type: String,
    pub memory_allocation: i32,
    pub maximum_instances: i32,
    pub minimum_instances: i32,
    pub maximum_idle_time: i32,
    pub description: Option<String>,
    pub labels: Labels,
    pub monitoring: Option<String>,
    pub default_notification_group: Option<String>,
    pub request_retention_time: i32,
    pub request_retention_mode: RetentionMode,
    pub maximum_queue_size_express: i32,
    pub maximum_queue_size_batch: i32,
    pub static_ip: bool,
    pub restart_request_interruption: bool,
    /// The settings only newer clients send (`version_settings`).
    pub runtime: RuntimeSettings,
}

impl VersionSettings {
    /// The one queue size of newer clients. Setting it sets both of API
    /// v2.1's queues; reading it shows the batch queue's, the one whose
    /// default (100000) newer clients show as theirs.
    pub fn maximum_queue_size(&self) -> i32 {
        self.maximum_queue_size_batch
    }
}

/// Body of `deployment_versions_create` and `deployment_versions_update`:
/// one shape, as both take the same settings. Create needs `version`.
/// `description`, `labels`, `monitoring`, `default_notification_group`,
/// `environment_tag`, `ports`, `health_check`, `command` and `args` may be
/// `null` to clear them.
///
/// Newer clients name three settings differently: `environment` (or
/// `environment_name`) for `language`, `instance_type_group_id` or
/// `instance_type_group_name` for `instance_type`, and `maximum_queue_size`
/// for the two queue sizes. Every name of a setting is accepted; when several
/// are sent they must agree. An update may change the environment (newer
/// clients do; the version then rebuilds), but not through `language`, which
/// API v2.1 documents as fixed.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionRequest {
    #[serde(default)]
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,62}[a-z0-9])?$")]
    pub version: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub environment_name: Option<String>,
    #[serde(default)]
    pub memory_allocation: Option<i32>,
    #[serde(default)]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub instance_type_group_id: Option<String>,
    #[serde(default)]
    pub instance_type_group_name: Option<String>,
    #[serde(default)]
    pub maximum_instances: Option<i32>,
    #[serde(default)]
    pub minimum_instances: Option<i32>,
    #[serde(default)]
    pub maximum_idle_time: Option<i32>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: Option<Option<Labels>>,
    #[serde(default, deserialize_with = "nullable")]
    pub monitoring: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub default_notification_group: Option<Option<String>>,
    #[serde(default)]
    pub request_retention_time: Option<i32>,
    #[serde(default)]
    pub request_retention_mode: Option<RetentionMode>,
    #[serde(default)]
    pub maximum_queue_size_express: Option<i32>,
    #[serde(default)]
    pub maximum_queue_size_batch: Option<i32>,
    #[serde(default)]
    pub static_ip: Option<bool>,
    #[serde(default)]
    pub restart_request_interruption: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub environment_tag: Option<Option<String>>,
    #[serde(default)]
    pub maximum_queue_size: Option<i32>,
    #[serde(default)]
    pub scaling_strategy: Option<ScalingStrategy>,
    #[serde(default)]
    pub instance_processes: Option<i32>,
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Option<Option<Vec<Port>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub health_check: Option<Option<HealthCheck>>,
    #[serde(default, deserialize_with = "nullable")]
    pub command: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub args: Option<Option<Vec<String>>>,
}

impl VersionRequest {
    pub fn create(self, catalog: &InstanceTypeCatalog) -> Result<VersionSettings, ValidationError> {
        let Some(name) = self.version.clone() else {
            return Err(ValidationError::new(
                "`version` is required: the name of the new version",
            ));
        };
        let language = self
            .requested_language()?
            .unwrap_or(DEFAULT_LANGUAGE)
            .to_owned();
        let defaults = VersionSettings {
            name,
            language,
            instance_type: format!("{DEFAULT_MEMORY_MIB}mb"),
            memory_allocation: DEFAULT_MEMORY_MIB,
            maximum_instances: DEFAULT_MAXIMUM_INSTANCES,
            minimum_instances: DEFAULT_MINIMUM_INSTANCES,
            maximum_idle_time: DEFAULT_MAXIMUM_IDLE_TIME,
            description: None,
            labels: Labels::new(),
            monitoring: None,
            default_notification_group: None,
            request_retention_time: DEFAULT_RETENTION_TIME,
            request_retention_mode: RetentionMode::Full,
            maximum_queue_size_express: DEFAULT_QUEUE_SIZE_EXPRESS,
            maximum_queue_size_batch: DEFAULT_QUEUE_SIZE_BATCH,
            static_ip: false,
            restart_request_interruption: false,
            runtime: RuntimeSettings::default(),
        };
        self.apply(defaults, catalog)
    }

    /// The current settings with this update applied, all rules checked again
    /// on the result (so `minimum_instances <= maximum_instances` holds across
    /// fields that were and were not sent).
    pub fn update(
        self,
        current: VersionSettings,
        catalog: &InstanceTypeCatalog,
    ) -> Result<VersionSettings, ValidationError> {
        if self
            .language
            .as_deref()
            .is_some_and(|l| l != current.language)
        {
            return Err(ValidationError::new(
                "`language` cannot be changed after a version is created: change `environment` instead (the version then rebuilds), or create a new version",
            ));
        }
        self.apply(current, catalog)
    }

    /// The language named by `language`, `environment` or `environment_name`.
    fn requested_language(&self) -> Result<Option<&'static str>, ValidationError> {
        let mut chosen = None;
        if let Some(language) = &self.language {
            let known = LANGUAGES
                .iter()
                .find(|(name, _)| *name == language.as_str())
                .map(|(name, _)| *name)
                .ok_or_else(|| {
                    let names: Vec<&str> = LANGUAGES.iter().map(|(name, _)| *name).collect();
                    ValidationError::new(format!(
                        "Unsupported language '{}': use one of {}",
                        shorten(language),
                        names.join(", ")
                    ))
                })?;
            agree(&mut chosen, "language", known)?;
        }
        for (field, value) in [
            ("environment", &self.environment),
            ("environment_name", &self.environment_name),
        ] {
            if let Some(name) = value {
                agree(&mut chosen, field, language_of_environment(field, name)?)?;
            }
        }
        Ok(chosen.map(|(_, language)| language))
    }

    /// The instance type named by `instance_type`, `instance_type_group_id`,
    /// `instance_type_group_name` or (for a plain type) `memory_allocation`.
    fn requested_instance_type(
        &self,
        catalog: &InstanceTypeCatalog,
    ) -> Result<Option<InstanceType>, ValidationError> {
        let mut chosen = None;
        if let Some(name) = &self.instance_type {
            agree(&mut chosen, "instance_type", catalog.by_name(name)?)?;
        }
        if let Some(id) = &self.instance_type_group_id {
            agree(
                &mut chosen,
                "instance_type_group_id",
                catalog.by_group_id(id)?,
            )?;
        }
        if let Some(name) = &self.instance_type_group_name {
            agree(
                &mut chosen,
                "instance_type_group_name",
                catalog.by_group_name(name)?,
            )?;
        }
        match (chosen, self.memory_allocation) {
            (Some((field, instance_type)), Some(memory)) if instance_type.memory_mib != memory => {
                Err(ValidationError::new(format!(
                    "{field} '{}' has {} MiB but memory_allocation is {memory}: send one of them, or matching values",
                    instance_type.name, instance_type.memory_mib
                )))
            }
            (Some((_, instance_type)), _) => Ok(Some(instance_type)),
            (None, Some(memory)) => catalog.by_memory(memory).map(Some),
            (None, None) => Ok(None),
        }
    }

    fn apply(
        self,
        mut settings: VersionSettings,
        catalog: &InstanceTypeCatalog,
    ) -> Result<VersionSettings, ValidationError> {
        if let Some(language) = self.requested_language()? {
            settings.language = language.to_owned();
        }
        // memory_allocation, instance_type and the instance type group are
        // views of one setting.
        if let Some(instance_type) = self.requested_instance_type(catalog)? {
            settings.memory_allocation = instance_type.memory_mib;
            settings.instance_type = instance_type.name;
        }
        if let Some(name) = self.version {
            settings.name = name;
        }
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = self.$field {
                    settings.$field = value;
                }
            )*};
        }
        set!(
            maximum_instances,
            minimum_instances,
            maximum_idle_time,
            request_retention_time,
            request_retention_mode,
            maximum_queue_size_express,
            maximum_queue_size_batch,
            static_ip,
            restart_request_interruption
        );
        if let Some(description) = self.description {
            settings.description = text::description(description)?;
        }
        if let Some(labels) = self.labels {
            settings.labels = labels.unwrap_or_default();
        }
        if let Some(monitoring) = self.monitoring {
            settings.monitoring = notification_group("monitoring", monitoring)?;
        }
        if let Some(group) = self.default_notification_group {
            settings.default_notification_group =
                notification_group("default_notification_group", group)?;
        }
        if let Some(size) = self.maximum_queue_size {
            for (field, other) in [
                (
                    "maximum_queue_size_express",
                    self.maximum_queue_size_express,
                ),
                ("maximum_queue_size_batch", self.maximum_queue_size_batch),
            ] {
                if other.is_some_and(|other| other != size) {
                    return Err(ValidationError::new(format!(
                        "`maximum_queue_size` and `{field}` name different sizes ({size} and {}): send one of them, or matching values",
                        other.unwrap_or_default()
                    )));
                }
            }
            settings.maximum_queue_size_express = size;
            settings.maximum_queue_size_batch = size;
        }
        let runtime = &mut settings.runtime;
        if let Some(tag) = self.environment_tag {
            runtime.environment_tag = tag;
        }
        if let Some(strategy) = self.scaling_strategy {
            runtime.scaling_strategy = strategy;
        }
        if let Some(processes) = self.instance_processes {
            runtime.instance_processes = processes;
        }
        if let Some(ports) = self.ports {
            runtime.ports = ports.unwrap_or_default();
        }
        if let Some(check) = self.health_check {
            runtime.health_check = check.map(complete_health_check);
        }
        if let Some(command) = self.command {
            runtime.command = command;
        }
        if let Some(args) = self.args {
            runtime.args = args;
        }
        validate(&settings, catalog)?;
        settings
            .runtime
            .validate(&environment_name(&settings.language))?;
        Ok(settings)
    }
}

/// Records the value of one more field naming a setting; every field that names
/// it must name the same value.
fn agree<T: PartialEq + std::fmt::Display>(
    chosen: &mut Option<(&'static str, T)>,
    field: &'static str,
    value: T,
) -> Result<(), ValidationError> {
    match chosen {
        Some((first, earlier)) if *earlier != value => Err(ValidationError::new(format!(
            "`{first}` and `{field}` name different settings ('{earlier}' and '{value}'): send one of them, or matching values"
        ))),
        Some(_) => Ok(()),
        None => {
            *chosen = Some((field, value));
            Ok(())
        }
    }
}

/// Stored as given (this server has no notification groups to check against).
fn notification_group(
    field: &str,
    value: Option<String>,
) -> Result<Option<String>, ValidationError> {
    text::optional_text(field, value, MAX_NOTIFICATION_GROUP_LENGTH)
}

fn validate(
    settings: &VersionSettings,
    catalog: &InstanceTypeCatalog,
) -> Result<(), ValidationError> {
    validate_resource_name("version", &settings.name)?;
    validate_labels(&settings.labels)?;
    in_range(
        "maximum_instances",
        settings.maximum_instances,
        0,
        MAX_INSTANCES,
    )?;
    in_range(
        "minimum_instances",
        settings.minimum_instances,
        0,
        MAX_INSTANCES,
    )?;
    if settings.minimum_instances > settings.maximum_instances {
        return Err(ValidationError::new(format!(
            "minimum_instances ({}) must not exceed maximum_instances ({})",
            settings.minimum_instances, settings.maximum_instances
        )));
    }
    let gpu = catalog.by_name(&settings.instance_type)?.is_gpu();
    let min_idle = if gpu {
        MIN_IDLE_TIME_GPU
    } else {
        MIN_IDLE_TIME
    };
    in_range(
        "maximum_idle_time",
        settings.maximum_idle_time,
        min_idle,
        MAX_IDLE_TIME,
    )?;
    in_range(
        "request_retention_time",
        settings.request_retention_time,
        0,
        MAX_RETENTION_TIME,
    )?;
    in_range(
        "maximum_queue_size_express",
        settings.maximum_queue_size_express,
        0,
        MAX_QUEUE_SIZE,
    )?;
    in_range(
        "maximum_queue_size_batch",
        settings.maximum_queue_size_batch,
        0,
        MAX_QUEUE_SIZE,
    )?;
    Ok(())
}

pub(crate) fn in_range(field: &str, value: i32, min: i32, max: i32) -> Result<(), ValidationError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ValidationError::new(format!(
            "{field} must be between {min} and {max}, got {value}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use uuid::Uuid;

    fn request(body: Value) -> Result<VersionRequest, String> {
        serde_json::from_value(body).map_err(|e| e.to_string())
    }

    fn create(body: Value) -> Result<VersionSettings, String> {
        request(body)?
            .create(&InstanceTypeCatalog::default())
            .map_err(|e| e.message().to_owned())
    }

    fn update(current: &VersionSettings, body: Value) -> Result<VersionSettings, String> {
        request(body)?
            .update(current.clone(), &InstanceTypeCatalog::default())
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn a_name_alone_gets_every_documented_default() {
        let settings = create(json!({"version": "v1"})).unwrap();
        assert_eq!(
            settings,
            VersionSettings {
                name: "v1".into(),
                language: "python3.7".into(),
                instance_type: "2048mb".into(),
                memory_allocation: 2048,
                maximum_instances: 5,
                minimum_instances: 0,
                maximum_idle_time: 300,
                description: None,
                labels: Labels::new(),
                monitoring: None,
                default_notification_group: None,
                request_retention_time: 604800,
                request_retention_mode: RetentionMode::Full,
                maximum_queue_size_express: 100,
                maximum_queue_size_batch: 100000,
                static_ip: false,
                restart_request_interruption: false,
                runtime: RuntimeSettings::default(),
            }
        );
    }

    #[test]
    fn languages_and_descriptions() {
        for (language, description) in LANGUAGES {
            let settings = create(json!({"version": "v", "language": language})).unwrap();
            assert_eq!(language_description(&settings.language), Some(*description));
        }
        assert_eq!(language_description("python3.8"), Some("Python 3.8"));
        assert_eq!(language_description("r4.0"), Some("R 4.0"));
        for bad in ["python3.6", "python2.7", "java", "", "Python3.8"] {
            let err = create(json!({"version": "v", "language": bad})).unwrap_err();
            assert!(err.contains("Unsupported language"), "{bad}: {err}");
        }
    }

    #[test]
    fn memory_and_instance_type_are_one_setting() {
        let by_type = create(json!({"version": "v", "instance_type": "512mb"})).unwrap();
        assert_eq!(
            (by_type.memory_allocation, by_type.instance_type.as_str()),
            (512, "512mb")
        );
        let by_memory = create(json!({"version": "v", "memory_allocation": 16384})).unwrap();
        assert_eq!(by_memory.instance_type, "16384mb");
        let both =
            create(json!({"version": "v", "memory_allocation": 256, "instance_type": "256mb"}))
                .unwrap();
        assert_eq!(both.memory_allocation, 256);
        let gpu = create(
            json!({"version": "v", "language": "python3.8_cuda", "instance_type": "16384mb_t4"}),
        )
        .unwrap();
        assert_eq!(gpu.memory_allocation, 16384);
        assert!(create(
            json!({"version": "v", "memory_allocation": 512, "instance_type": "256mb"})
        )
        .is_err());
        for bad in [
            json!({"memory_allocation": 255}),
            json!({"memory_allocation": 16385}),
            json!({"memory_allocation": 300}),
            json!({"instance_type": "128mb"}),
            json!({"instance_type": "2gb"}),
            json!({"instance_type": "32768mb"}),
        ] {
            let mut body = bad.clone();
            body["version"] = json!("v");
            assert!(create(body).is_err(), "{bad}");
        }
        // Updating either view updates both.
        let current = create(json!({"version": "v"})).unwrap();
        let updated = update(&current, json!({"memory_allocation": 4096})).unwrap();
        assert_eq!(updated.instance_type, "4096mb");
        let updated = update(&current, json!({"instance_type": "256mb"})).unwrap();
        assert_eq!(updated.memory_allocation, 256);
    }

    #[test]
    fn environment_is_another_name_for_language() {
        let by_environment = create(json!({"version": "v", "environment": "python3-8"})).unwrap();
        assert_eq!(by_environment.language, "python3.8");
        let by_name =
            create(json!({"version": "v", "environment_name": "python3-10-cuda"})).unwrap();
        assert_eq!(by_name.language, "python3.10_cuda");
        let all_three = create(json!({"version": "v", "language": "r4.0", "environment": "r4-0", "environment_name": "r4.0"}))
            .unwrap();
        assert_eq!(all_three.language, "r4.0");
        let err =
            create(json!({"version": "v", "language": "python3.9", "environment": "python3-8"}))
                .unwrap_err();
        assert!(
            err.contains("`language` and `environment` name different settings"),
            "{err}"
        );
        let err = create(json!({"version": "v", "environment": "ubuntu22-04"})).unwrap_err();
        assert!(
            err.starts_with("Unknown environment 'ubuntu22-04'"),
            "{err}"
        );
        // An update may change the environment, not through `language`.
        assert_eq!(
            update(&by_environment, json!({"environment": "python3-8"})).unwrap(),
            by_environment
        );
        let changed = update(&by_environment, json!({"environment_name": "python3-9"})).unwrap();
        assert_eq!(changed.language, "python3.9");
        let err = update(&by_environment, json!({"language": "python3.9"})).unwrap_err();
        assert!(err.contains("`language` cannot be changed"), "{err}");
        let err = update(&by_environment, json!({"environment": "java"})).unwrap_err();
        assert!(err.starts_with("Unknown environment 'java'"), "{err}");
        // A tag must be one of the new environment's.
        let tagged = update(&by_environment, json!({"environment_tag": "latest"})).unwrap();
        assert_eq!(tagged.runtime.environment_tag.as_deref(), Some("latest"));
        assert!(update(&tagged, json!({"environment": "r4-0"})).is_ok());
    }

    #[test]
    fn newer_clients_settings_are_applied_checked_and_cleared() {
        let body = json!({
            "version": "v",
            "environment": "python3-11",
            "environment_tag": "latest",
            "scaling_strategy": "moderate",
            "instance_processes": 2,
            "maximum_queue_size": 500,
            "ports": [{"public_port": 2222, "deployment_port": 22, "protocol": "tcp"}],
            "health_check": {"port": 8080, "path": "/status", "timeout": 3, "interval": 5},
            "command": ["python", "serve.py"],
            "args": ["--verbose"],
        });
        let settings = create(body).unwrap();
        let runtime = &settings.runtime;
        assert_eq!(runtime.environment_tag.as_deref(), Some("latest"));
        assert_eq!(runtime.scaling_strategy, ScalingStrategy::Moderate);
        assert_eq!(runtime.instance_processes, 2);
        assert_eq!(runtime.ports.len(), 1);
        let check = runtime.health_check.as_ref().unwrap();
        // The documented default threshold is filled in.
        assert_eq!(
            (check.interval, check.failure_threshold),
            (Some(5), Some(1))
        );
        assert_eq!(
            runtime.command.as_deref(),
            Some(&["python".to_owned(), "serve.py".to_owned()][..])
        );
        // One queue size for newer clients is both of API v2.1's.
        assert_eq!(
            (
                settings.maximum_queue_size_express,
                settings.maximum_queue_size_batch,
                settings.maximum_queue_size()
            ),
            (500, 500, 500)
        );

        let cleared = update(
            &settings,
            json!({"environment_tag": null, "ports": null, "health_check": null, "command": null, "args": []}),
        )
        .unwrap();
        assert_eq!(cleared.runtime.environment_tag, None);
        assert!(cleared.runtime.ports.is_empty() && cleared.runtime.health_check.is_none());
        assert_eq!(
            (cleared.runtime.command, cleared.runtime.args),
            (None, Some(vec![]))
        );
        assert_eq!(cleared.runtime.instance_processes, 2);

        for (bad, names) in [
            (json!({"environment_tag": "v1"}), "environment_tag"),
            // serde names the expected values; over HTTP the path names the field.
            (
                json!({"scaling_strategy": "fast"}),
                "expected one of `default`, `moderate`, `accelerated`",
            ),
            (json!({"instance_processes": 0}), "instance_processes"),
            (json!({"maximum_queue_size": -1}), "maximum_queue_size"),
            (
                json!({"ports": [{"public_port": 0, "deployment_port": 1, "protocol": "tcp"}]}),
                "ports[0].public_port",
            ),
            (json!({"health_check": {"path": "/"}}), "health_check.port"),
            (json!({"command": "python serve.py"}), "expected a sequence"),
            (
                json!({"maximum_queue_size": 10, "maximum_queue_size_batch": 20}),
                "maximum_queue_size_batch",
            ),
        ] {
            let mut body = bad.clone();
            body["version"] = json!("v");
            let err = create(body).unwrap_err();
            assert!(err.contains(names), "{bad}: {err}");
        }
        assert!(create(
            json!({"version": "v", "maximum_queue_size": 7, "maximum_queue_size_express": 7})
        )
        .is_ok());
    }

    #[test]
    fn instance_type_groups_are_another_name_for_instance_types() {
        let catalog = InstanceTypeCatalog::default();
        let small = catalog.by_name("512mb").unwrap();
        // Ids are stable: derived from the name, not random.
        assert_eq!(
            small.group_id(),
            catalog.by_name("512mb").unwrap().group_id()
        );
        assert_ne!(
            small.group_id(),
            catalog.by_name("1024mb").unwrap().group_id()
        );
        let id = small.group_id().to_string();

        let by_id = create(json!({"version": "v", "instance_type_group_id": id})).unwrap();
        assert_eq!(
            (by_id.instance_type.as_str(), by_id.memory_allocation),
            ("512mb", 512)
        );
        let by_name = create(json!({"version": "v", "instance_type_group_name": "16384mb_t4", "maximum_idle_time": 300}))
            .unwrap();
        assert_eq!(
            (by_name.instance_type.as_str(), by_name.memory_allocation),
            ("16384mb_t4", 16384)
        );
        assert!(create(json!({"version": "v", "instance_type": "512mb", "instance_type_group_id": id, "memory_allocation": 512}))
            .is_ok());

        let err = create(
            json!({"version": "v", "instance_type": "1024mb", "instance_type_group_id": id}),
        )
        .unwrap_err();
        assert!(
            err.contains("`instance_type` and `instance_type_group_id` name different settings"),
            "{err}"
        );
        let err = create(
            json!({"version": "v", "instance_type_group_name": "512mb", "memory_allocation": 1024}),
        )
        .unwrap_err();
        assert!(
            err.contains(
                "instance_type_group_name '512mb' has 512 MiB but memory_allocation is 1024"
            ),
            "{err}"
        );
        for bad in [
            json!({"instance_type_group_id": "not-a-uuid"}),
            json!({"instance_type_group_id": Uuid::nil().to_string()}),
            json!({"instance_type_group_name": "2048 MB + 0.5 vCPU"}),
        ] {
            let mut body = bad.clone();
            body["version"] = json!("v");
            let err = create(body).unwrap_err();
            assert!(
                err.starts_with("Unknown instance_type_group_"),
                "{bad}: {err}"
            );
        }
        // Updating by group updates every view.
        let updated = update(&by_id, json!({"instance_type_group_name": "4096mb"})).unwrap();
        assert_eq!(
            (updated.instance_type.as_str(), updated.memory_allocation),
            ("4096mb", 4096)
        );
    }

    #[test]
    fn bounds_at_both_edges() {
        let ok = |field: &str, value: i64| create(json!({"version": "v", field: value})).is_ok();
        assert!(ok("maximum_idle_time", 10) && ok("maximum_idle_time", 3600));
        assert!(!ok("maximum_idle_time", 9) && !ok("maximum_idle_time", 3601));
        assert!(ok("maximum_instances", 0) && ok("maximum_instances", 1000));
        assert!(!ok("maximum_instances", -1) && !ok("maximum_instances", 1001));
        assert!(ok("request_retention_time", 0) && ok("request_retention_time", 31536000));
        assert!(!ok("request_retention_time", -1) && !ok("request_retention_time", 31536001));
        assert!(ok("maximum_queue_size_express", 0) && !ok("maximum_queue_size_batch", -1));
        assert!(!ok("maximum_queue_size_batch", 10_000_001));
        // GPU types idle at least 300 s.
        assert!(create(
            json!({"version": "v", "instance_type": "16384mb_t4", "maximum_idle_time": 299})
        )
        .is_err());
        assert!(create(
            json!({"version": "v", "instance_type": "16384mb_t4", "maximum_idle_time": 300})
        )
        .is_ok());
        // Types are checked too (not silently truncated).
        assert!(create(json!({"version": "v", "maximum_instances": 2.5})).is_err());
        assert!(create(json!({"version": "v", "maximum_instances": 3_000_000_000_i64})).is_err());
        assert!(create(json!({"version": "v", "static_ip": "yes"})).is_err());
    }

    #[test]
    fn minimum_never_exceeds_maximum_across_updates() {
        let err = create(json!({"version": "v", "minimum_instances": 6})).unwrap_err();
        assert!(
            err.contains("minimum_instances (6) must not exceed maximum_instances (5)"),
            "{err}"
        );
        let current = create(json!({"version": "v", "minimum_instances": 2})).unwrap();
        assert!(update(&current, json!({"maximum_instances": 1})).is_err());
        assert!(update(&current, json!({"maximum_instances": 2})).is_ok());
    }

    #[test]
    fn retention_modes_and_notification_groups() {
        for mode in ["none", "metadata", "full"] {
            let settings = create(json!({"version": "v", "request_retention_mode": mode})).unwrap();
            assert_eq!(settings.request_retention_mode.as_str(), mode);
        }
        assert!(create(json!({"version": "v", "request_retention_mode": "some"})).is_err());
        let settings = create(
            json!({"version": "v", "monitoring": "group-1", "default_notification_group": ""}),
        )
        .unwrap();
        assert_eq!(settings.monitoring.as_deref(), Some("group-1"));
        assert_eq!(settings.default_notification_group, None);
        let cleared = update(&settings, json!({"monitoring": null})).unwrap();
        assert_eq!(cleared.monitoring, None);
        assert!(create(json!({"version": "v", "monitoring": "x".repeat(65)})).is_err());
    }

    #[test]
    fn update_rules() {
        let current =
            create(json!({"version": "v1", "labels": {"a": "b"}, "description": "d"})).unwrap();
        let renamed = update(&current, json!({"version": "v2"})).unwrap();
        assert_eq!(renamed.name, "v2");
        assert!(update(&current, json!({"version": "V2"})).is_err());
        assert!(update(&current, json!({"language": "python3.8"}))
            .unwrap_err()
            .contains("cannot be changed"));
        assert!(update(&current, json!({"language": "python3.7"})).is_ok());
        let cleared = update(&current, json!({"labels": null, "description": null})).unwrap();
        assert_eq!((cleared.labels.len(), cleared.description), (0, None));
        assert_eq!(update(&current, json!({})).unwrap(), current);
        assert!(request(json!({"colour": "red"}))
            .unwrap_err()
            .contains("unknown field"));
        assert!(create(json!({}))
            .unwrap_err()
            .contains("`version` is required"));
    }
}
