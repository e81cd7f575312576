//! Cited sections must exist: comments and documents point at the repository's docs as
//! `docs/<name>.md` followed by a comma and a section heading in double quotes. A renamed or
//! removed heading would leave them pointing nowhere, so `cargo xtask lint` (and this module's
//! tests) fail naming each citation whose heading is missing. A citation may wrap across
//! comment lines (`//!`, `///`, `//`, `#`), and the file name may sit in backticks.

use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Files whose text is searched for citations.
const SCANNED: [&str; 7] = ["rs", "py", "md", "toml", "yaml", "yml", "sh"];
/// Directories never searched (build output, caches); hidden ones are skipped too.
const SKIPPED: [&str; 4] = ["target", "node_modules", "__pycache__", "corpus"];

/// Checks every citation under `root` against the headings of the document it names.
pub fn check(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    collect(root, &mut files)?;
    let mut headings: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    let mut missing = Vec::new();
    for path in files {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        for (doc, section) in citations(&text) {
            let known = headings.entry(doc.clone()).or_insert_with(|| {
                fs::read_to_string(root.join(&doc))
                    .ok()
                    .map(|text| headings_of(&text))
            });
            let found = known.as_ref().is_some_and(|h| h.contains(&section));
            if !found {
                let shown = path.strip_prefix(root).unwrap_or(&path).display();
                missing.push(format!("{shown}: {doc}, \"{section}\""));
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "cited sections that are not headings of their document (rename the citation or \
             the heading):\n  {}",
            missing.join("\n  ")
        );
    }
    Ok(())
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !name.starts_with('.') && !SKIPPED.contains(&name.as_ref()) {
                collect(&path, files)?;
            }
        } else if kind.is_file()
            && path
                .extension()
                .is_some_and(|ext| SCANNED.iter().any(|s| ext == *s))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// The `(document, section)` pairs `text` cites, whitespace in a section collapsed to single
/// spaces.
fn citations(text: &str) -> Vec<(String, String)> {
    // Comment markers at line starts are dropped, so a citation reads the same when wrapped.
    let joined = text
        .lines()
        .map(|line| {
            let line = line.trim_start();
            ["//!", "///", "//", "#"]
                .iter()
                .find_map(|marker| line.strip_prefix(marker))
                .unwrap_or(line)
                .trim()
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut found = Vec::new();
    let mut rest = joined.as_str();
    while let Some(at) = rest.find("docs/") {
        rest = &rest[at..];
        let after = &rest["docs/".len()..];
        rest = after;
        let Some(end) = after.find(".md") else {
            break;
        };
        let name = &after[..end];
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            continue;
        }
        let tail = &after[end + ".md".len()..];
        let tail = tail.strip_prefix('`').unwrap_or(tail);
        let Some(tail) = tail.strip_prefix(',') else {
            continue;
        };
        let Some(quoted) = tail.trim_start().strip_prefix('"') else {
            continue;
        };
        if let Some(close) = quoted.find('"') {
            let section = quoted[..close].split_whitespace().collect::<Vec<_>>();
            found.push((format!("docs/{name}.md"), section.join(" ")));
        }
    }
    found
}

/// Every Markdown heading's text, outside fenced code blocks.
fn headings_of(markdown: &str) -> Vec<String> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            out.push(line.trim_start_matches('#').trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(doc: &str, section: &str) -> (String, String) {
        (doc.to_string(), section.to_string())
    }

    #[test]
    fn citations_are_read_across_wrapped_comment_lines() {
        let text = "//! The path (docs/architecture.md, \"Request\n//! path\"): more.\n\
                    # fuzz (docs/architecture.md, \"Testing and\n# measuring\").\n\
                    See `docs/security.md`, \"Threats and defences\".\n\
                    Not a citation: docs/architecture.md alone, docs/x.md; \"quoted\".\n";
        assert_eq!(
            citations(text),
            vec![
                pair("docs/architecture.md", "Request path"),
                pair("docs/architecture.md", "Testing and measuring"),
                pair("docs/security.md", "Threats and defences"),
            ]
        );
    }

    #[test]
    fn headings_in_code_fences_do_not_count() {
        let markdown = "# Title\n## Caching\n```sh\n# not a heading\n```\n### Core and shell\n";
        assert_eq!(
            headings_of(markdown),
            vec!["Title", "Caching", "Core and shell"]
        );
    }

    #[test]
    fn a_missing_heading_or_document_is_reported_by_citation() {
        let root = std::env::temp_dir().join(format!("xtask-doc-sections-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("docs")).unwrap();
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(root.join("docs/a.md"), "# A\n## Real\n").unwrap();
        fs::write(
            root.join("src/x.rs"),
            "//! (docs/a.md, \"Real\") (docs/a.md, \"Gone\")\n//! (docs/b.md, \"Any\")\n",
        )
        .unwrap();
        let err = check(&root).unwrap_err().to_string();
        fs::write(root.join("src/x.rs"), "//! (docs/a.md, \"Real\")\n").unwrap();
        let fixed = check(&root);
        let _ = fs::remove_dir_all(&root);
        assert!(err.contains("docs/a.md, \"Gone\""), "{err}");
        assert!(err.contains("docs/b.md, \"Any\""), "{err}");
        assert!(!err.contains("\"Real\""), "{err}");
        assert!(fixed.is_ok(), "{fixed:?}");
    }

    /// The repository itself: every cited section of its docs exists.
    #[test]
    fn every_section_this_repository_cites_exists() {
        check(&crate::root()).unwrap();
    }
}
