//! One way an event breaks its plan, in the shape stored with the event (the lake's
//! `violations` column, the blocked events, the debugger) and counted in metrics.

use jsonschema::ValidationError;
use jsonschema::error::ValidationErrorKind;
use serde::{Deserialize, Serialize};

/// Violations kept per event at most (see the crate's decisions).
pub const MAX_VIOLATIONS: usize = 20;
/// A violation's message is cut to this many characters: it may quote the client's value.
const MAX_MESSAGE_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// `unplanned_event`, or the JSON Schema keyword that failed: `type`, `required`, `enum`,
    /// `additionalProperties`, `minimum`, `format`, `pattern`, …
    pub kind: String,
    /// Where in the checked object, as a JSON pointer (`/price`, `/items/0/sku`); for
    /// `required` and `additionalProperties`, the property missing or not planned; empty for
    /// the object itself and for `unplanned_event`.
    pub property: String,
    pub message: String,
}

impl Violation {
    pub(crate) fn unplanned_event(event: &str) -> Violation {
        Violation {
            kind: "unplanned_event".to_owned(),
            property: String::new(),
            message: cut(format!("event {event:?} is not in the tracking plan")),
        }
    }
}

/// The violations one validation error stands for (one per property it names).
pub(crate) fn push_from_error(out: &mut Vec<Violation>, error: &ValidationError<'_>) {
    let at = error.instance_path().as_str();
    let kind = error.kind();
    let keyword = kind.keyword().to_owned();
    let message = cut(error.to_string());
    let named: Vec<String> = match kind {
        ValidationErrorKind::Required { property } => {
            vec![property.as_str().map_or_else(|| property.to_string(), str::to_owned)]
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => unexpected.clone(),
        _ => Vec::new(),
    };
    if named.is_empty() {
        out.push(Violation { kind: keyword, property: at.to_owned(), message });
        return;
    }
    for name in named {
        out.push(Violation {
            kind: keyword.clone(),
            property: format!("{at}/{}", name.replace('~', "~0").replace('/', "~1")),
            message: message.clone(),
        });
    }
}

fn cut(mut message: String) -> String {
    if let Some((index, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(index);
        message.push('…');
    }
    message
}
