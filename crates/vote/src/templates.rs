//! The page, an askama template compiled into the binary
//! (`templates/index.html`); no template files are read at run time.

use std::sync::Arc;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use common::options::VoteOptions;

use crate::assets;

/// What every rendering of the page shares, computed once at start.
#[derive(Debug)]
pub struct PageView {
    /// "Cats vs Dogs!", from the option names.
    pub question: String,
    pub options: VoteOptions,
    /// Shown as "Processed by container ID ...".
    pub hostname: String,
    pub css_href: &'static str,
    pub icon_href: &'static str,
}

impl PageView {
    pub fn new(options: VoteOptions, hostname: String) -> Self {
        Self {
            question: question(&options),
            options,
            hostname,
            css_href: assets::href(&assets::CSS),
            icon_href: assets::href(&assets::ICON),
        }
    }
}

/// "Cats vs Dogs!", "Tea vs Coffee vs Water!".
pub fn question(options: &VoteOptions) -> String {
    let names: Vec<&str> = options.iter().map(|o| o.name.as_str()).collect();
    format!("{}!", names.join(" vs "))
}

/// The vote page, with the option just voted for marked (after a POST).
#[derive(Template)]
#[template(path = "index.html")]
pub struct Page {
    pub view: Arc<PageView>,
    /// Key of the option voted for in this request, if any.
    pub chosen: Option<&'static str>,
    /// Its display name.
    pub chosen_name: Option<String>,
}

impl Page {
    pub fn new(view: Arc<PageView>, chosen: Option<&'static str>) -> Self {
        let chosen_name = chosen
            .and_then(|k| view.options.get(k))
            .map(|o| o.name.clone());
        Self {
            view,
            chosen,
            chosen_name,
        }
    }
}

/// Every page the service can answer with, rendered once at start.
///
/// The page depends only on the settings and on which option (if any) was
/// just chosen, so there are `options + 1` of them; rendering them up front
/// takes the template (and a 1-2 KB allocation) out of every request, and a
/// template error shows at start rather than as a 500.
#[derive(Debug, Clone)]
pub struct Pages {
    blank: Bytes,
    /// Indexed like the options.
    chosen: Vec<(&'static str, Bytes)>,
}

impl Pages {
    pub fn render(view: &Arc<PageView>) -> Result<Self, askama::Error> {
        let render = |chosen| Page::new(view.clone(), chosen).render().map(Bytes::from);
        Ok(Self {
            blank: render(None)?,
            chosen: view
                .options
                .iter()
                .map(|o| Ok((o.key, render(Some(o.key))?)))
                .collect::<Result<_, askama::Error>>()?,
        })
    }

    /// The page with `chosen` marked, or with nothing marked.
    pub fn get(&self, chosen: Option<&str>) -> RenderedPage {
        let body = chosen
            .and_then(|k| self.chosen.iter().find(|(key, _)| *key == k))
            .map_or(&self.blank, |(_, b)| b);
        // A reference-counted clone: no copy.
        RenderedPage(body.clone())
    }
}

/// A rendered page as a response.
pub struct RenderedPage(Bytes);

impl IntoResponse for RenderedPage {
    fn into_response(self) -> Response {
        let mut res = Response::new(Body::from(self.0));
        let h = res.headers_mut();
        // Room for every header this response gets on its way out (these
        // two, the cookie, the security headers, content-length, date), so
        // the map is allocated once rather than grown twice per request.
        h.reserve(12);
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // The page answers a POST and may come with a cookie: never store it
        // in a shared cache, nor replay it from one.
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(options: VoteOptions) -> Arc<PageView> {
        Arc::new(PageView::new(options, "c0ffee123".into()))
    }

    #[test]
    fn question_is_built_from_the_names() {
        assert_eq!(question(&VoteOptions::default()), "Cats vs Dogs!");
        let three = VoteOptions::new([
            ("a", "Tea".into()),
            ("b", "Coffee".into()),
            ("c", "Water".into()),
        ]);
        assert_eq!(question(&three), "Tea vs Coffee vs Water!");
    }

    #[test]
    fn renders_options_host_and_no_choice() {
        let html = Page::new(view(VoteOptions::default()), None)
            .render()
            .unwrap();
        assert!(html.contains("<title>Cats vs Dogs!</title>"));
        assert!(html.contains(r#"name="vote" value="a""#));
        assert!(html.contains(r#"name="vote" value="b""#));
        assert!(html.contains("Processed by container ID <code>c0ffee123</code>"));
        assert!(!html.contains("chosen"));
        assert!(!html.contains("aria-pressed"));
        assert!(html.contains(assets::href(&assets::CSS)));
        // Nothing inline: the CSP allows only files from this origin.
        assert!(!html.contains("<script") && !html.contains("style="));
    }

    #[test]
    fn marks_the_chosen_option() {
        let html = Page::new(view(VoteOptions::default()), Some("b"))
            .render()
            .unwrap();
        assert!(html.contains(r#"class="option option-b chosen""#), "{html}");
        assert!(html.contains(r#"aria-pressed="true""#));
        assert!(html.contains(r#"aria-pressed="false""#));
        assert!(html.contains("Your vote for <strong>Dogs</strong>"));
    }

    #[test]
    fn pages_are_rendered_once_per_choice() {
        let v = view(VoteOptions::default());
        let pages = Pages::render(&v).unwrap();
        let body = |p: RenderedPage| String::from_utf8(p.0.to_vec()).unwrap();
        assert_eq!(
            body(pages.get(None)),
            Page::new(v.clone(), None).render().unwrap()
        );
        assert_eq!(
            body(pages.get(Some("b"))),
            Page::new(v.clone(), Some("b")).render().unwrap()
        );
        assert_eq!(body(pages.get(Some("z"))), body(pages.get(None)));
    }

    #[test]
    fn names_are_escaped() {
        let opts = VoteOptions::new([("a", "<b>Tom & Jerry</b>".into()), ("b", "X".into())]);
        let html = Page::new(view(opts), Some("a")).render().unwrap();
        assert!(!html.contains("<b>Tom"));
        assert!(
            html.contains("&#60;b&#62;Tom &#38; Jerry&#60;/b&#62;")
                || html.contains("&lt;b&gt;Tom &amp; Jerry"),
            "{html}"
        );
    }
}
