//! The version settings that newer clients (`ubiops` 4.x, `ubiops-cli`) send
//! besides those of API v2.1: the environment's tag, how instances scale and
//! run (scaling strategy, processes per instance, ports, health check, the
//! command and its arguments). They are kept together in one typed value,
//! stored as one document, so that a new setting of this kind is a field here,
//! a field of the request and a line where the request is applied.
//!
//! This server runs no deployment instances yet: these settings are checked,
//! stored and returned, and take effect once instances exist.

use serde::{Deserialize, Serialize};

use crate::environment::SYSTEM_ENVIRONMENT_TAG;
use crate::version::{in_range, shorten};
use crate::ValidationError;

pub const DEFAULT_INSTANCE_PROCESSES: i32 = 1;
pub const MAX_INSTANCE_PROCESSES: i32 = 100;
pub const MAX_PORTS: usize = 10;
pub const MAX_PORT: i32 = 65_535;
pub const MAX_HEALTH_CHECK_SECONDS: i32 = 3600;
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 1;
pub const MAX_FAILURE_THRESHOLD: i32 = 100;
pub const MAX_HEALTH_CHECK_PATH_LENGTH: usize = 1024;
pub const MAX_COMMAND_ITEMS: usize = 100;
pub const MAX_COMMAND_ITEM_LENGTH: usize = 4096;

/// How eagerly instances are added when requests queue up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScalingStrategy {
    #[default]
    Default,
    Moderate,
    Accelerated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A port of the deployment's instances opened to the outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub public_port: i32,
    pub deployment_port: i32,
    pub protocol: Protocol,
}

/// An HTTP check of each instance. `port` and `path` are needed to know what
/// to ask (the CLI takes them only together); the rest is optional, and the
/// failure threshold has its documented default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub port: Option<i32>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub interval: Option<i32>,
    #[serde(default)]
    pub timeout: Option<i32>,
    #[serde(default)]
    pub failure_threshold: Option<i32>,
}

/// The 4.x settings of a version, complete and valid. Stored as one JSON
/// document: every field has a default, so a document written before a field
/// existed still reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RuntimeSettings {
    pub environment_tag: Option<String>,
    pub scaling_strategy: ScalingStrategy,
    pub instance_processes: i32,
    pub ports: Vec<Port>,
    pub health_check: Option<HealthCheck>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            environment_tag: None,
            scaling_strategy: ScalingStrategy::Default,
            instance_processes: DEFAULT_INSTANCE_PROCESSES,
            ports: Vec::new(),
            health_check: None,
            command: None,
            args: None,
        }
    }
}

/// The tags of the environment with this name that a version may pick: every
/// environment this server offers is a system one with one tag.
pub fn environment_tags(_environment: &str) -> &'static [&'static str] {
    &[SYSTEM_ENVIRONMENT_TAG]
}

impl RuntimeSettings {
    /// Checks every setting; `environment` is the version's environment name
    /// (its tag must be one of that environment's).
    pub fn validate(&self, environment: &str) -> Result<(), ValidationError> {
        if let Some(tag) = &self.environment_tag {
            let tags = environment_tags(environment);
            if !tags.contains(&tag.as_str()) {
                return Err(ValidationError::new(format!(
                    "Unknown environment_tag '{}' for environment '{environment}': use one of {}",
                    shorten(tag),
                    tags.join(", ")
                )));
            }
        }
        in_range(
            "instance_processes",
            self.instance_processes,
            1,
            MAX_INSTANCE_PROCESSES,
        )?;
        validate_ports(&self.ports)?;
        if let Some(check) = &self.health_check {
            validate_health_check(check)?;
        }
        validate_command("command", self.command.as_deref())?;
        validate_command("args", self.args.as_deref())?;
        Ok(())
    }
}

fn validate_ports(ports: &[Port]) -> Result<(), ValidationError> {
    if ports.len() > MAX_PORTS {
        return Err(ValidationError::new(format!(
            "ports: at most {MAX_PORTS} ports, got {}",
            ports.len()
        )));
    }
    for (index, port) in ports.iter().enumerate() {
        in_range(
            &format!("ports[{index}].public_port"),
            port.public_port,
            1,
            MAX_PORT,
        )?;
        in_range(
            &format!("ports[{index}].deployment_port"),
            port.deployment_port,
            1,
            MAX_PORT,
        )?;
        if ports[..index].iter().any(|earlier| {
            (earlier.public_port, earlier.protocol) == (port.public_port, port.protocol)
        }) {
            return Err(ValidationError::new(format!(
                "ports[{index}]: public_port {} is listed twice for the same protocol",
                port.public_port
            )));
        }
    }
    Ok(())
}

fn validate_health_check(check: &HealthCheck) -> Result<(), ValidationError> {
    let Some(port) = check.port else {
        return Err(ValidationError::new(
            "health_check.port is required: the port of the instance to check",
        ));
    };
    in_range("health_check.port", port, 1, MAX_PORT)?;
    let Some(path) = &check.path else {
        return Err(ValidationError::new(
            "health_check.path is required: the HTTP path to check, such as /health",
        ));
    };
    if !path.starts_with('/')
        || path.chars().count() > MAX_HEALTH_CHECK_PATH_LENGTH
        || path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ValidationError::new(format!(
            "health_check.path must start with / and have at most {MAX_HEALTH_CHECK_PATH_LENGTH} characters without spaces, got '{}'",
            shorten(path)
        )));
    }
    for (field, value) in [
        ("health_check.interval", check.interval),
        ("health_check.timeout", check.timeout),
    ] {
        if let Some(seconds) = value {
            in_range(field, seconds, 1, MAX_HEALTH_CHECK_SECONDS)?;
        }
    }
    if let Some(threshold) = check.failure_threshold {
        in_range(
            "health_check.failure_threshold",
            threshold,
            1,
            MAX_FAILURE_THRESHOLD,
        )?;
    }
    Ok(())
}

/// A health check as stored: the documented default filled in.
pub fn complete_health_check(mut check: HealthCheck) -> HealthCheck {
    check
        .failure_threshold
        .get_or_insert(DEFAULT_FAILURE_THRESHOLD);
    check
}

fn validate_command(field: &str, items: Option<&[String]>) -> Result<(), ValidationError> {
    let Some(items) = items else {
        return Ok(());
    };
    if items.len() > MAX_COMMAND_ITEMS {
        return Err(ValidationError::new(format!(
            "{field}: at most {MAX_COMMAND_ITEMS} items, got {}",
            items.len()
        )));
    }
    for (index, item) in items.iter().enumerate() {
        if item.chars().count() > MAX_COMMAND_ITEM_LENGTH || item.contains('\0') {
            return Err(ValidationError::new(format!(
                "{field}[{index}] must have at most {MAX_COMMAND_ITEM_LENGTH} characters and no NUL"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(settings: &RuntimeSettings) -> Result<(), String> {
        settings
            .validate("python3-11")
            .map_err(|e| e.message().to_owned())
    }

    fn with(change: impl FnOnce(&mut RuntimeSettings)) -> RuntimeSettings {
        let mut settings = RuntimeSettings::default();
        change(&mut settings);
        settings
    }

    fn port(public_port: i32, deployment_port: i32, protocol: Protocol) -> Port {
        Port {
            public_port,
            deployment_port,
            protocol,
        }
    }

    fn health(port: Option<i32>, path: Option<&str>) -> HealthCheck {
        HealthCheck {
            port,
            path: path.map(str::to_owned),
            interval: None,
            timeout: None,
            failure_threshold: None,
        }
    }

    #[test]
    fn defaults_are_valid_and_an_old_document_reads_as_defaults() {
        assert_eq!(check(&RuntimeSettings::default()), Ok(()));
        let read: RuntimeSettings = serde_json::from_value(json!({})).unwrap();
        assert_eq!(read, RuntimeSettings::default());
        let partial: RuntimeSettings =
            serde_json::from_value(json!({"instance_processes": 3})).unwrap();
        assert_eq!(
            (partial.instance_processes, partial.scaling_strategy),
            (3, ScalingStrategy::Default)
        );
    }

    #[test]
    fn the_stored_document_round_trips() {
        let settings = RuntimeSettings {
            environment_tag: Some("latest".into()),
            scaling_strategy: ScalingStrategy::Accelerated,
            instance_processes: 4,
            ports: vec![port(2222, 22, Protocol::Tcp)],
            health_check: Some(complete_health_check(health(Some(8080), Some("/status")))),
            command: Some(vec!["python".into()]),
            args: Some(vec!["-m".into(), "server".into()]),
        };
        let stored = serde_json::to_value(&settings).unwrap();
        assert_eq!(stored["scaling_strategy"], "accelerated");
        assert_eq!(stored["ports"][0]["protocol"], "tcp");
        assert_eq!(
            serde_json::from_value::<RuntimeSettings>(stored).unwrap(),
            settings
        );
    }

    #[test]
    fn environment_tags_are_those_the_environment_lists() {
        let tagged = with(|s| s.environment_tag = Some("latest".into()));
        assert_eq!(check(&tagged), Ok(()));
        for bad in ["v1", "", "Latest"] {
            let err = check(&with(|s| s.environment_tag = Some(bad.into()))).unwrap_err();
            assert!(
                err.starts_with(&format!(
                    "Unknown environment_tag '{bad}' for environment 'python3-11'"
                )),
                "{err}"
            );
            assert!(err.ends_with("use one of latest"), "{err}");
        }
    }

    #[test]
    fn scaling_strategies_are_the_three_names() {
        for (name, strategy) in [
            ("default", ScalingStrategy::Default),
            ("moderate", ScalingStrategy::Moderate),
            ("accelerated", ScalingStrategy::Accelerated),
        ] {
            assert_eq!(
                serde_json::from_value::<ScalingStrategy>(json!(name)).unwrap(),
                strategy
            );
        }
        for bad in ["fast", "Default", ""] {
            assert!(serde_json::from_value::<ScalingStrategy>(json!(bad)).is_err());
        }
    }

    #[test]
    fn instance_processes_at_both_edges() {
        let processes = |n| check(&with(|s| s.instance_processes = n));
        assert!(processes(1).is_ok() && processes(MAX_INSTANCE_PROCESSES).is_ok());
        let err = processes(0).unwrap_err();
        assert_eq!(err, "instance_processes must be between 1 and 100, got 0");
        assert!(processes(MAX_INSTANCE_PROCESSES + 1).is_err());
    }

    #[test]
    fn ports_are_in_range_unique_and_few() {
        let ports = |list: Vec<Port>| check(&with(|s| s.ports = list));
        assert!(ports(vec![
            port(1, 65535, Protocol::Tcp),
            port(1, 53, Protocol::Udp)
        ])
        .is_ok());
        let err = ports(vec![port(0, 80, Protocol::Tcp)]).unwrap_err();
        assert!(
            err.starts_with("ports[0].public_port must be between 1 and 65535"),
            "{err}"
        );
        let err = ports(vec![
            port(8080, 80, Protocol::Tcp),
            port(9000, 65536, Protocol::Tcp),
        ])
        .unwrap_err();
        assert!(err.starts_with("ports[1].deployment_port"), "{err}");
        let err = ports(vec![
            port(8080, 80, Protocol::Tcp),
            port(8080, 81, Protocol::Tcp),
        ])
        .unwrap_err();
        assert!(err.contains("public_port 8080 is listed twice"), "{err}");
        let many = (1..=11).map(|n| port(n, n, Protocol::Tcp)).collect();
        assert!(ports(many).unwrap_err().starts_with("ports: at most 10"));
        // Protocols are the two names, as the client sends them.
        assert!(serde_json::from_value::<Port>(
            json!({"public_port": 1, "deployment_port": 1, "protocol": "sctp"})
        )
        .is_err());
        assert!(serde_json::from_value::<Port>(
            json!({"public_port": 1, "deployment_port": 1, "protocol": "tcp", "extra": 1})
        )
        .is_err());
    }

    #[test]
    fn health_checks_need_port_and_path_and_bounded_timings() {
        let health_check = |value: HealthCheck| check(&with(|s| s.health_check = Some(value)));
        assert!(health_check(health(Some(8080), Some("/status"))).is_ok());
        assert!(health_check(health(None, Some("/status")))
            .unwrap_err()
            .starts_with("health_check.port is required"));
        assert!(health_check(health(Some(8080), None))
            .unwrap_err()
            .starts_with("health_check.path is required"));
        assert!(health_check(health(Some(0), Some("/")))
            .unwrap_err()
            .starts_with("health_check.port must be between 1 and 65535"));
        for bad in ["status", "/with space", ""] {
            assert!(
                health_check(health(Some(80), Some(bad)))
                    .unwrap_err()
                    .starts_with("health_check.path must start with /"),
                "{bad}"
            );
        }
        let timed = |interval, timeout, failure_threshold| HealthCheck {
            interval,
            timeout,
            failure_threshold,
            ..health(Some(80), Some("/"))
        };
        assert!(health_check(timed(Some(1), Some(3600), Some(100))).is_ok());
        assert!(health_check(timed(Some(0), None, None))
            .unwrap_err()
            .starts_with("health_check.interval must be between 1 and 3600"));
        assert!(health_check(timed(None, Some(3601), None))
            .unwrap_err()
            .starts_with("health_check.timeout"));
        assert!(health_check(timed(None, None, Some(0)))
            .unwrap_err()
            .starts_with("health_check.failure_threshold"));
        assert_eq!(
            complete_health_check(timed(Some(5), None, None)).failure_threshold,
            Some(DEFAULT_FAILURE_THRESHOLD)
        );
        assert_eq!(
            complete_health_check(timed(Some(5), None, Some(3))).failure_threshold,
            Some(3)
        );
    }

    #[test]
    fn command_and_args_are_bounded_lists_of_text() {
        let command = |items: Vec<String>| check(&with(|s| s.command = Some(items)));
        assert!(command(vec!["python".into(), "-u".into()]).is_ok());
        assert!(command(vec!["x".repeat(MAX_COMMAND_ITEM_LENGTH + 1)])
            .unwrap_err()
            .starts_with("command[0] must have at most"));
        assert!(command(vec!["a\0b".into()]).is_err());
        let args = check(&with(|s| s.args = Some(vec![String::new(); 101]))).unwrap_err();
        assert!(args.starts_with("args: at most 100 items"), "{args}");
    }
}
