//! Rendering an error for people: the error and each of its causes, one per line. Every stage
//! turns its failures into text through here, once, where the text is shown.

/// An error and its causes, one per line.
pub fn render_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    out
}
