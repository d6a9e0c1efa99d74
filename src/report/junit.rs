//! JUnit XML, the format every CI system shows as test results: one `<testsuite>` per
//! group (cluster), one `<testcase>` per eval case.

use std::fmt::Write as _;

pub struct JunitCase {
    /// The group (cluster id), shown as the class name.
    pub classname: String,
    pub name: String,
    pub seconds: f64,
    /// `(message, body)` when the case failed.
    pub failure: Option<(String, String)>,
    /// `system-out` text (e.g. per-trial outcomes).
    pub out: String,
}

pub fn render(suite_name: &str, cases: &[JunitCase]) -> String {
    let mut groups: Vec<(&str, Vec<&JunitCase>)> = Vec::new();
    for c in cases {
        match groups.iter_mut().find(|(g, _)| *g == c.classname) {
            Some((_, v)) => v.push(c),
            None => groups.push((&c.classname, vec![c])),
        }
    }
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let total: f64 = cases.iter().map(|c| c.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">",
        esc(suite_name),
        cases.len()
    );
    for (group, members) in groups {
        let f = members.iter().filter(|c| c.failure.is_some()).count();
        let t: f64 = members.iter().map(|c| c.seconds).sum();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" time=\"{t:.3}\">",
            esc(group),
            members.len()
        );
        for c in members {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                esc(&c.classname),
                esc(&c.name),
                c.seconds
            );
            if c.failure.is_none() && c.out.is_empty() {
                x.push_str("/>\n");
                continue;
            }
            x.push_str(">\n");
            if let Some((msg, body)) = &c.failure {
                let _ = writeln!(x, "      <failure message=\"{}\">{}</failure>", esc(msg), esc(body));
            }
            if !c.out.is_empty() {
                let _ = writeln!(x, "      <system-out>{}</system-out>", esc(&c.out));
            }
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// XML text and attribute escaping; characters XML 1.0 forbids are dropped.
pub fn esc(s: &str) -> String {
    super::neutral::xml(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_groups() {
        let xml = render(
            "eval",
            &[
                JunitCase {
                    classname: "k-1".into(),
                    name: "c-1".into(),
                    seconds: 0.5,
                    failure: None,
                    out: String::new(),
                },
                JunitCase {
                    classname: "k-1".into(),
                    name: "c-2".into(),
                    seconds: 1.0,
                    failure: Some(("0/3 <passed>".into(), "exit \u{1} 1 & more".into())),
                    out: String::new(),
                },
            ],
        );
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains("message=\"0/3 &lt;passed&gt;\""));
        assert!(xml.contains("exit  1 &amp; more"));
        assert_eq!(xml.matches("<testsuite ").count(), 1);
    }
}
