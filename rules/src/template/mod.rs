//! Label and annotation templates: the subset of Go's `text/template` Prometheus alert templates use.
//!
//! Supported: text; `{{ ... }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`; the variables
//! `$labels`, `$value`, `$externalLabels`, `$externalURL` and `$` (and `.Labels`, `.Value`, ...); field access
//! (`$labels.instance`); pipelines (`$value | humanize`); declarations (`{{ $v := ... }}`); string, number and
//! boolean literals; the functions `humanize`, `humanize1024`, `humanizeDuration`, `humanizePercentage`,
//! `humanizeTimestamp`, `printf`, `print`, `toUpper`, `toLower`, `title`, `stripPort`, `stripDomain`, `index`
//! and `len`, with Go's number formatting.
//!
//! Refused at load, naming the construct: control structures (`if`, `range`, `with`, `define`, `template`,
//! `block`), the query functions (`query`, `first`, `label`, `value`, `sortByLabel`, ...) and any other
//! function. An error while expanding (a value that is not a number given to `humanize`, say) is the caller's
//! to handle: the engine keeps the raw text and counts the failure.

mod exec;
mod functions;
mod gofmt;
mod parse;
mod tree;

use std::fmt;

use self::parse::Parser;
use self::tree::Node;
pub use self::tree::{TemplateData, TemplateError};

/// A parsed template and its source.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

impl Template {
    /// Parses a template, refusing what dbwatch cannot expand.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let nodes = Parser::new(source).parse()?;
        Ok(Template {
            source: source.to_owned(),
            nodes,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template has no actions: it expands to its source.
    pub fn is_static(&self) -> bool {
        self.nodes.iter().all(|node| matches!(node, Node::Text(_)))
    }

    /// Expands the template; an error leaves the choice of fallback to the caller.
    pub fn expand(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        exec::expand(&self.nodes, data, self.source.len())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests;
