//! What a request asks to do, in the terms authorizers decide on (kube's
//! `authorizer.Attributes`), and how an HTTP request maps onto them (kube's
//! `RequestInfoFactory`: `GET /api/v1/namespaces/dev/pods` is `list pods in dev`).
//!
//! Invariants: a resource request always has a verb from kube's set (`get list watch create
//! update patch delete deletecollection` or a special verb from the path); a non-resource request
//! has the lower-cased HTTP method as its verb and the raw path.

use crate::user::UserInfo;

/// An authorization question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// `get`, `list`, `create`, `impersonate`, … (or `get`/`post`/… for non-resource paths).
    pub verb: String,
    /// Namespace, empty for cluster-scoped requests.
    pub namespace: String,
    /// API group, "" for the core group.
    pub api_group: String,
    /// API version (`*` from access reviews that name none).
    pub api_version: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource (`log`, `status`, `token`, …).
    pub subresource: String,
    /// Object name, empty for collections.
    pub name: String,
    /// The URL path (what non-resource rules match).
    pub path: String,
    /// Resource request (`/api`, `/apis`) or not (`/healthz`, `/version`, …).
    pub resource_request: bool,
    /// Parsed `fieldSelector` (the Node authorizer allows `spec.nodeName=<self>` lists).
    pub field_selector: Vec<FieldRequirement>,
    /// Raw `labelSelector`, for audit and reviews.
    pub label_selector: String,
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Field path, e.g. `spec.nodeName`.
    pub field: String,
    /// `=`/`==` (equals) or `!=`.
    pub op: FieldOp,
    /// The value.
    pub value: String,
}

/// Field selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

impl Attributes {
    /// A resource request.
    pub fn resource(user: UserInfo, verb: &str, api_group: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
        Attributes {
            user,
            verb: verb.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            resource_request: true,
            ..Default::default()
        }
    }

    /// The same request for a subresource.
    pub fn with_subresource(mut self, subresource: &str) -> Attributes {
        self.subresource = subresource.into();
        self
    }

    /// A non-resource request (`get /healthz`).
    pub fn non_resource(user: UserInfo, verb: &str, path: &str) -> Attributes {
        Attributes { user, verb: verb.into(), path: path.into(), ..Default::default() }
    }

    /// Parses an HTTP request line as kube's `RequestInfoFactory` does. `query` is the raw
    /// query string (without `?`). The user is filled in by the caller.
    pub fn from_request(method: &str, path: &str, query: &str) -> Attributes {
        let mut a = Attributes { verb: method.to_ascii_lowercase(), path: path.to_string(), ..Default::default() };
        let trimmed = path.trim_matches('/');
        let mut parts: Vec<&str> = if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
        if parts.len() < 3 || (parts[0] != "api" && parts[0] != "apis") {
            return a;
        }
        let groupless = parts[0] == "api";
        parts.remove(0);
        if !groupless {
            if parts.len() < 3 {
                return a;
            }
            a.api_group = parts.remove(0).to_string();
        }
        a.resource_request = true;
        a.api_version = parts.remove(0).to_string();
        if parts[0] == "watch" || parts[0] == "proxy" {
            if parts.len() < 2 {
                // kube answers such paths with an error; no resource, so nothing is authorized.
                a.verb = parts[0].to_string();
                return a;
            }
            a.verb = parts.remove(0).to_string();
        } else {
            a.verb = match method {
                "POST" => "create",
                "GET" | "HEAD" => "get",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "",
            }
            .to_string();
        }
        if parts[0] == "namespaces" && parts.len() > 1 {
            a.namespace = parts[1].to_string();
            if parts.len() > 2 && parts[2] != "status" && parts[2] != "finalize" {
                parts.drain(..2);
            }
        }
        if parts.len() >= 3 && a.verb != "proxy" {
            a.subresource = parts[2].to_string();
        }
        if parts.len() >= 2 {
            a.name = parts[1].to_string();
        }
        a.resource = parts[0].to_string();

        let params = parse_query(query);
        let param = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if let Some(fs) = param("fieldSelector") {
            a.field_selector = parse_field_selector(fs);
        }
        if let Some(ls) = param("labelSelector") {
            a.label_selector = ls.to_string();
        }
        if a.name.is_empty() && a.verb == "get" {
            a.verb = if param("watch").is_some_and(watch_is_true) { "watch" } else { "list" }.to_string();
            let exact: Vec<&FieldRequirement> =
                a.field_selector.iter().filter(|r| r.field == "metadata.name" && r.op == FieldOp::Equals).collect();
            if let [only] = exact.as_slice()
                && valid_path_segment(&only.value)
            {
                a.name = only.value.clone();
            }
        }
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }
}

/// `watch=` as Go's `strconv.ParseBool`, with kube's fallback: anything unparsable but not
/// `false`/`0` counts as true.
fn watch_is_true(v: &str) -> bool {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
        "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
        other => !matches!(other.to_ascii_lowercase().as_str(), "false" | "0"),
    }
}

fn valid_path_segment(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

/// Splits a query string into decoded key/value pairs (Go's `url.ParseQuery`).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Parses a field selector (`a=b,c!=d`, with `\` escapes) into its terms. Terms that do not
/// parse are dropped: they can only make an authorizer say less, never more.
pub fn parse_field_selector(selector: &str) -> Vec<FieldRequirement> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in selector.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    terms.push(current);
    terms.iter().filter_map(|t| parse_term(t)).collect()
}

fn parse_term(term: &str) -> Option<FieldRequirement> {
    // Find the first unescaped operator.
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        let (op, len) = if term[i..].starts_with("!=") {
            (FieldOp::NotEquals, 2)
        } else if term[i..].starts_with("==") {
            (FieldOp::Equals, 2)
        } else if b[i] == b'=' {
            (FieldOp::Equals, 1)
        } else {
            i += 1;
            continue;
        };
        let field = unescape(term[..i].trim());
        let value = unescape(&term[i + len..]);
        return (!field.is_empty()).then_some(FieldRequirement { field, op, value });
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &str, url: &str) -> (String, String, String, String, String, String, bool) {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let a = Attributes::from_request(method, path, query);
        (a.verb, a.api_group, a.namespace, a.resource, a.subresource, a.name, a.resource_request)
    }

    #[test]
    fn request_info_as_kube_parses_it() {
        // Cases from kube's requestinfo_test.go TestGetAPIRequestInfo.
        let t = |v: &str, g: &str, ns: &str, r: &str, s: &str, n: &str| {
            (v.to_string(), g.to_string(), ns.to_string(), r.to_string(), s.to_string(), n.to_string(), true)
        };
        let cases = [
            ("GET", "/api/v1/namespaces", t("list", "", "", "namespaces", "", "")),
            ("GET", "/api/v1/namespaces/other", t("get", "", "other", "namespaces", "", "other")),
            ("GET", "/api/v1/namespaces/other/pods", t("list", "", "other", "pods", "", "")),
            ("GET", "/api/v1/namespaces/other/pods/foo", t("get", "", "other", "pods", "", "foo")),
            ("HEAD", "/api/v1/namespaces/other/pods/foo", t("get", "", "other", "pods", "", "foo")),
            ("GET", "/api/v1/pods", t("list", "", "", "pods", "", "")),
            ("GET", "/api/v1/namespaces/other/pods?watch=true", t("watch", "", "other", "pods", "", "")),
            ("GET", "/api/v1/namespaces/other/pods?watch=false", t("list", "", "other", "pods", "", "")),
            ("GET", "/api/v1/namespaces/other/pods?watch=yes", t("watch", "", "other", "pods", "", "")),
            ("GET", "/api/v1/watch/namespaces/other/pods", t("watch", "", "other", "pods", "", "")),
            ("GET", "/api/v1/namespaces/other/pods/foo/log", t("get", "", "other", "pods", "log", "foo")),
            ("POST", "/api/v1/namespaces/other/pods", t("create", "", "other", "pods", "", "")),
            ("PUT", "/api/v1/namespaces/other/pods/foo", t("update", "", "other", "pods", "", "foo")),
            ("PATCH", "/api/v1/namespaces/other/pods/foo", t("patch", "", "other", "pods", "", "foo")),
            ("DELETE", "/api/v1/namespaces/other/pods/foo", t("delete", "", "other", "pods", "", "foo")),
            ("DELETE", "/api/v1/namespaces/other/pods", t("deletecollection", "", "other", "pods", "", "")),
            ("PUT", "/api/v1/namespaces/other/finalize", t("update", "", "other", "namespaces", "finalize", "other")),
            ("PUT", "/api/v1/namespaces/other/status", t("update", "", "other", "namespaces", "status", "other")),
            ("GET", "/apis/apps/v1/namespaces/dev/deployments", t("list", "apps", "dev", "deployments", "", "")),
            ("GET", "/api/v1/proxy/namespaces/other/pods/foo/a/b", t("proxy", "", "other", "pods", "", "foo")),
            ("GET", "/api/v1/namespaces/other/pods?fieldSelector=metadata.name%3Dfoo", t("list", "", "other", "pods", "", "foo")),
            ("POST", "/api/v1/namespaces/dev/serviceaccounts/default/token", t("create", "", "dev", "serviceaccounts", "token", "default")),
        ];
        for (m, url, want) in cases {
            assert_eq!(parse(m, url), want, "{m} {url}");
        }
    }

    #[test]
    fn non_resource_requests_keep_method_and_path() {
        for (m, p) in
            [("GET", "/healthz"), ("GET", "/api"), ("GET", "/api/v1"), ("GET", "/apis/apps/v1"), ("POST", "/"), ("GET", "/version/")]
        {
            let a = Attributes::from_request(m, p, "");
            assert!(!a.resource_request, "{p}");
            assert_eq!(a.verb, m.to_lowercase());
            assert_eq!(a.path, p);
        }
    }

    #[test]
    fn field_selectors_parse_with_escapes() {
        let r = parse_field_selector(r"spec.nodeName=n1,status.phase!=Running,a\,b==c\=d");
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].field.as_str(), r[0].op, r[0].value.as_str()), ("spec.nodeName", FieldOp::Equals, "n1"));
        assert_eq!(r[1].op, FieldOp::NotEquals);
        assert_eq!((r[2].field.as_str(), r[2].value.as_str()), ("a,b", "c=d"));
        assert!(parse_field_selector("").is_empty());
        let q = parse_query("fieldSelector=spec.nodeName%3Dkeel-1&limit=500&x=a+b");
        assert_eq!(q[0], ("fieldSelector".into(), "spec.nodeName=keel-1".into()));
        assert_eq!(q[2].1, "a b");
    }
}
