//! Git mode's comparison reports: written once a pass has read its last results (each shows
//! its suite's history over the model's versions), in the model's own templates when it names
//! any — files of the revision's registry folder — and written again when those change.

use crate::decide::report::{self, Format};
use crate::edges::source::dir;

use super::*;

impl Reconciler<'_> {
    /// Where the report of evaluation `ns/name` in `format` is written.
    pub(super) fn report_path(&self, ns: &str, name: &str, format: Format) -> std::path::PathBuf {
        let ext = match format {
            Format::Markdown => "md",
            Format::Html => "html",
        };
        self.state_dir
            .join("reports")
            .join(ns)
            .join(format!("{name}.{ext}"))
    }

    /// Writes the reports of the evaluations that finished (`finished`, as namespace and name):
    /// each with its model's history from `results`, in its model's templates when it names
    /// any (files of the revision's registry folder).
    pub(super) fn write_reports(
        &self,
        catalog: &Catalog,
        results: &Results,
        finished: &[(String, String)],
    ) -> Result<(), Error> {
        if finished.is_empty() {
            return Ok(());
        }
        let evaluations = self.evaluations(catalog)?;
        for (ns, name) in finished {
            let Some(e) = evaluations.iter().find(|e| {
                e.metadata.name.as_deref() == Some(name.as_str())
                    && e.metadata.namespace.as_deref() == Some(ns.as_str())
            }) else {
                continue;
            };
            let subject = report::Subject::of(catalog, results, e);
            for format in [Format::Markdown, Format::Html] {
                let custom = subject
                    .model
                    .as_ref()
                    .and_then(|m| report::template_of(m, format))
                    .map(|t| self.template(&t));
                let path = self.report_path(ns, name, format);
                let (body, failed) = report::render_checked(&subject, format, custom.as_ref());
                if let (Some(why), Some(c)) = (failed, &custom) {
                    (self.progress)(&format!(
                        "warning: {ns}/{name}: the report template {} failed, the default report is written: {why}",
                        c.origin
                    ));
                }
                let written = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&path, body));
                written.map_err(|source| Error::Report {
                    path: path.display().to_string(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Writes again the reports of every finished evaluation of a model whose templates changed
    /// (named, or their files' content) since its reports were written: a team sees its new
    /// template without running anything again. What they were written with is kept beside
    /// the reports (`.templates/MODEL`).
    pub(super) fn rewrite_reports(
        &self,
        catalog: &Catalog,
        results: &Results,
    ) -> Result<(), Error> {
        use sha2::Digest;
        for m in catalog.objects() {
            let Resource::RegisteredModel(model) = &m.resource else {
                continue;
            };
            let ns = m.key.namespace.as_str();
            let mut used = sha2::Sha256::new();
            for format in [Format::Markdown, Format::Html] {
                if let Some(t) = report::template_of(model, format) {
                    let c = self.template(&t);
                    used.update(format!("{}\n{:?}\n", c.origin, c.text));
                }
            }
            let used = match model.spec.report {
                Some(_) => crate::decide::hex(&used.finalize()),
                None => String::new(),
            };
            let mark = self
                .state_dir
                .join("reports")
                .join(ns)
                .join(".templates")
                .join(&m.key.name);
            if std::fs::read_to_string(&mark).unwrap_or_default() == used {
                continue;
            }
            let finished: Vec<(String, String)> = self
                .evaluations(catalog)?
                .iter()
                .filter(|e| {
                    e.spec.model == m.key.name && e.metadata.namespace.as_deref() == Some(ns)
                })
                .filter(|e| e.status.as_ref().is_some_and(|s| s.report.is_some()))
                .filter_map(|e| Some((ns.to_string(), e.metadata.name.clone()?)))
                .collect();
            self.write_reports(catalog, results, &finished)?;
            let written = match used.is_empty() {
                true => std::fs::remove_file(&mark).or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                }),
                false => mark
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&mark, &used)),
            };
            written.map_err(|source| Error::Report {
                path: mark.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// A model's report template: a file of the revision's registry folder.
    fn template(&self, t: &report::TemplateRef) -> report::Custom {
        let text = match &t.config_map {
            Some(cm) => Err(format!(
                "a ConfigMap ({cm}) holds report templates in a cluster; in git mode name files of the registry folder and leave `configMap` out"
            )),
            None => self
                .root
                .path()
                .and_then(|root| dir::read_within(&root, &t.name, report::MAX_TEMPLATE)),
        };
        report::Custom {
            origin: t.origin(),
            text,
        }
    }
}
