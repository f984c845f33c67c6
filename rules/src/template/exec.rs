//! Expanding a parsed template over one alert's data: pipelines, variables and fields, with Go's
//! `missingkey=zero` for labels.

use super::functions::call;
use super::gofmt::print_value;
use super::tree::*;

/// Expands `nodes` over `data`; `capacity` sizes the output.
pub(super) fn expand(
    nodes: &[Node],
    data: &TemplateData<'_>,
    capacity: usize,
) -> Result<String, TemplateError> {
    let mut scope = Scope {
        data,
        variables: Vec::new(),
    };
    let mut out = String::with_capacity(capacity);
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Print(pipeline) => {
                let value = scope.pipeline(pipeline)?;
                print_value(&value, &mut out);
            }
            Node::Declare(name, pipeline) => {
                let value = scope.pipeline(pipeline)?;
                scope.variables.push((name.clone(), value));
            }
        }
    }
    Ok(out)
}

pub(super) struct Scope<'d, 'a> {
    data: &'d TemplateData<'a>,
    variables: Vec<(String, TValue)>,
}

impl Scope<'_, '_> {
    fn pipeline(&mut self, pipeline: &Pipeline) -> Result<TValue, TemplateError> {
        let mut piped: Option<TValue> = None;
        for command in &pipeline.commands {
            let value = match &command.args[0] {
                Operand::Function(function) => {
                    let mut args = Vec::with_capacity(command.args.len());
                    for arg in &command.args[1..] {
                        args.push(self.operand(arg)?);
                    }
                    if let Some(value) = piped.take() {
                        args.push(value);
                    }
                    call(*function, args)?
                }
                operand => self.operand(operand)?,
            };
            piped = Some(value);
        }
        Ok(piped.unwrap_or(TValue::Nil))
    }

    /// The label `fields[0]` of the result sample ("" when absent: missingkey=zero), then the other fields.
    fn label_field(&self, fields: &[String]) -> Result<TValue, TemplateError> {
        let value = self.data.labels.get(&fields[0]).unwrap_or_default();
        fields_of(TValue::String(value.to_owned()), &fields[1..], self.data)
    }

    fn operand(&mut self, operand: &Operand) -> Result<TValue, TemplateError> {
        match operand {
            Operand::Function(_) => Err(TemplateError(
                "a function as an argument needs parentheses".to_owned(),
            )),
            Operand::String(text) => Ok(TValue::String(text.clone())),
            Operand::Int(value) => Ok(TValue::Int(*value)),
            Operand::Float(value) => Ok(TValue::Float(*value)),
            Operand::Bool(value) => Ok(TValue::Bool(*value)),
            Operand::Nil => Ok(TValue::Nil),
            // `.Labels.x` and `$labels.x`, the most common uses, read one label instead of copying them all.
            Operand::Dot(fields) if fields.len() >= 2 && fields[0] == "Labels" => {
                self.label_field(&fields[1..])
            }
            Operand::Dot(fields) => fields_of(TValue::Root, fields, self.data),
            Operand::Variable(name, fields) if name == "labels" && !fields.is_empty() => {
                self.label_field(fields)
            }
            Operand::Variable(name, fields) => {
                let base = match name.as_str() {
                    "" => TValue::Root,
                    "labels" => TValue::Map(self.data.labels.to_map()),
                    "externalLabels" => TValue::Map(self.data.external_labels.clone()),
                    "externalURL" => TValue::String(self.data.external_url.to_owned()),
                    "value" => TValue::Float(self.data.value),
                    other => match self.variables.iter().rev().find(|(name, _)| name == other) {
                        Some((_, value)) => value.clone(),
                        None => {
                            return Err(TemplateError(format!("undefined variable \"${other}\"")))
                        }
                    },
                };
                fields_of(base, fields, self.data)
            }
            Operand::Pipeline(pipeline, fields) => {
                let value = self.pipeline(pipeline)?;
                fields_of(value, fields, self.data)
            }
        }
    }
}

pub(super) fn fields_of(
    mut value: TValue,
    fields: &[String],
    data: &TemplateData<'_>,
) -> Result<TValue, TemplateError> {
    for field in fields {
        value = match value {
            TValue::Root => match field.as_str() {
                "Labels" => TValue::Map(data.labels.to_map()),
                "ExternalLabels" => TValue::Map(data.external_labels.clone()),
                "ExternalURL" => TValue::String(data.external_url.to_owned()),
                "Value" => TValue::Float(data.value),
                other => {
                    return Err(TemplateError(format!(
                        "can't evaluate field {other} in type struct"
                    )))
                }
            },
            // missingkey=zero: a missing label reads as "".
            TValue::Map(map) => TValue::String(map.get(field).cloned().unwrap_or_default()),
            other => {
                return Err(TemplateError(format!(
                    "can't evaluate field {field} in type {}",
                    other.type_name()
                )))
            }
        };
    }
    Ok(value)
}
