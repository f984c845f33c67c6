//! The seam between the daemon and the database engines: the one closed list of target types, and the only
//! place that matches on it.
//!
//! Each target type is a [`TargetType`] in a module of its own here (`postgres.rs` holds `postgres` and
//! `pgbouncer`, which share their connection keys): how its `connection:` and `collectors:` keys are read,
//! how they are validated against the target around them, which collector is built from them and which rule
//! files ship with it. The [`engines!`] list below turns those modules into [`RawEngine`] (as read),
//! [`Engine`] (validated) and the matches on them. Every engine is behind the Cargo feature of its name, so a
//! build carries only the engines it was asked for, and a target of another type is refused naming the
//! feature.
//!
//! Adding an engine: its module in `dbwatch-collectors`, its module here, one line in the list.

mod read;

use dbwatch_collectors::Collector;
use dbwatch_yaml::node::Mark;
use dbwatch_yaml::read::{Fields, Reader};

pub use read::{check_positive, spanned_duration, Errors, Spanned, TargetLimits};

/// One target type: everything the daemon needs to know of it, in one place.
pub trait TargetType {
    /// The engine's part of a target as read, before the cross-field rules.
    type Raw: std::fmt::Debug;
    /// What the collector is built from.
    type Options: std::fmt::Debug + Clone;
    /// The rule files shipped for it (`alerts/`), as (file name, text), built into the binary.
    const RULES: &'static [(&'static str, &'static str)] = &[];

    /// Reads the keys that depend on `type` (`connection`, `collectors`) from a target's fields, recording
    /// every problem; `None` when nothing could be made of them.
    fn read(
        reader: &mut Reader<'_>,
        fields: &mut Fields<'_>,
        target_mark: Mark,
    ) -> Option<Self::Raw>;

    /// Applies defaults and cross-field rules (timeouts inside the target's deadline). Pure.
    fn validate(
        raw: Self::Raw,
        target: TargetLimits<'_>,
        errors: &mut Errors<'_>,
    ) -> Option<Self::Options>;

    /// Builds the collector. It does not connect; the first poll does.
    fn build(options: &Self::Options) -> Box<dyn Collector>;
}

/// The rules about the fleet signals every engine fills, shipped whatever the engines.
const FLEET_RULES: (&str, &str) = ("fleet.yml", include_str!("../../alerts/fleet.yml"));

/// Declares the engine modules and generates the closed enums and the matches on them from one list:
/// `"feature" module { Variant = "type", ... }`, where `module::Variant` is the [`TargetType`].
macro_rules! engines {
    ($($feature:literal $module:ident { $($variant:ident = $name:literal),+ $(,)? })+) => {
        $(#[cfg(feature = $feature)] mod $module;)+

        /// Every target type dbwatch knows, compiled into this build or not, as (type, Cargo feature).
        pub const TYPES: &[(&str, &str)] = &[$($(($name, $feature),)+)+];

        /// Whether a Cargo feature of an engine is compiled into this build.
        pub fn compiled(feature: &str) -> bool {
            $(
                #[cfg(feature = $feature)]
                if feature == $feature {
                    return true;
                }
            )+
            let _ = feature;
            false
        }

        /// A target's engine part as read: `type` and the keys that depend on it.
        #[derive(Debug)]
        pub enum RawEngine {
            $($(#[cfg(feature = $feature)] $variant(<$module::$variant as TargetType>::Raw),)+)+
        }

        /// The closed list of engines; each variant holds what its collector is built from.
        #[derive(Debug, Clone)]
        pub enum Engine {
            $($(#[cfg(feature = $feature)] $variant(<$module::$variant as TargetType>::Options),)+)+
        }

        /// Reads the keys of a compiled-in type; `None` when `kind` is not one.
        #[allow(unused_variables)]
        fn read_type(
            kind: &str,
            reader: &mut Reader<'_>,
            fields: &mut Fields<'_>,
            target_mark: Mark,
        ) -> Option<Option<RawEngine>> {
            match kind {
                $($(
                    #[cfg(feature = $feature)]
                    $name => Some(
                        <$module::$variant as TargetType>::read(reader, fields, target_mark)
                            .map(RawEngine::$variant),
                    ),
                )+)+
                _ => None,
            }
        }

        impl RawEngine {
            /// Validates the engine part of the target `target`.
            // With no engine compiled in, there is nothing to validate.
            #[allow(unused_variables)]
            pub fn validate(self, target: TargetLimits<'_>, errors: &mut Errors<'_>) -> Option<Engine> {
                match self {
                    $($(
                        #[cfg(feature = $feature)]
                        RawEngine::$variant(raw) => {
                            <$module::$variant as TargetType>::validate(raw, target, errors)
                                .map(Engine::$variant)
                        }
                    )+)+
                }
            }
        }

        impl Engine {
            /// The `db` label value of the engine's series: its `type`.
            pub fn db(&self) -> &'static str {
                match *self {
                    $($(#[cfg(feature = $feature)] Engine::$variant(_) => $name,)+)+
                }
            }

            /// Builds the collector for a target. It does not connect; the first poll does.
            pub fn build_collector(&self) -> Box<dyn Collector> {
                match *self {
                    $($(
                        #[cfg(feature = $feature)]
                        Engine::$variant(ref options) => {
                            <$module::$variant as TargetType>::build(options)
                        }
                    )+)+
                }
            }
        }

        /// The shipped rule files of this build, as (file name, text): the fleet's and each compiled engine's.
        pub fn rule_files() -> Vec<(&'static str, &'static str)> {
            #[allow(unused_mut)]
            let mut files = vec![FLEET_RULES];
            $($(
                #[cfg(feature = $feature)]
                files.extend_from_slice(<$module::$variant as TargetType>::RULES);
            )+)+
            files
        }
    };
}

engines! {
    "postgres" postgres { Postgres = "postgres", PgBouncer = "pgbouncer" }
    "mysql" mysql { Mysql = "mysql" }
    "mongodb" mongodb { Mongodb = "mongodb" }
    "cassandra" cassandra { Cassandra = "cassandra" }
    "dynamodb" dynamodb { Dynamodb = "dynamodb" }
}

/// Whether every engine dbwatch knows is compiled into this build (the default).
pub fn all_compiled() -> bool {
    TYPES.iter().all(|(_, feature)| compiled(feature))
}

impl RawEngine {
    /// Reads `type` and the keys that depend on it from a target's fields.
    pub fn read(
        reader: &mut Reader<'_>,
        fields: &mut Fields<'_>,
        target_mark: Mark,
    ) -> Option<RawEngine> {
        let names = || {
            TYPES
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some((type_node, type_path)) = fields.take("type") else {
            reader.error(
                target_mark,
                &format!("{}.type", fields.path()),
                format!("missing key type, expected one of: {}", names()),
            );
            return None;
        };
        let kind = reader.string(type_node, &type_path)?;
        if let Some(engine) = read_type(&kind, reader, fields, target_mark) {
            return engine;
        }
        match TYPES.iter().find(|(name, _)| *name == kind) {
            Some((_, feature)) => reader.error(
                type_node.mark,
                &type_path,
                format!("target type {kind:?} is not compiled into this build (cargo feature {feature})"),
            ),
            None => reader.error(
                type_node.mark,
                &type_path,
                format!("unknown target type {kind:?}, expected one of: {}", names()),
            ),
        }
        None
    }
}

/// The shipped rules of this build, parsed.
pub fn shipped_rules() -> Result<dbwatch_rules::RuleSet, dbwatch_rules::RuleErrors> {
    dbwatch_rules::load_embedded(&rule_files())
}
