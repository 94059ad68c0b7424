//! Access reviews (`authorization.k8s.io/v1`), evaluated as kube's registry does:
//! `SelfSubjectAccessReview` and `SelfSubjectRulesReview` for the requesting user (what
//! `kubectl auth can-i [--list]` sends, after impersonation for `--as`), `SubjectAccessReview`
//! and `LocalSubjectAccessReview` for the user named in the spec.
//!
//! Invariants: the status is `allowed` iff the authorizer chain allows, `denied` iff one denies;
//! reason and evaluation error are the chain's; a review is never refused for being negative.

use crate::attributes::{Attributes, FieldOp, FieldRequirement, parse_field_selector};
use crate::authz::{Authorizer, Decision, Verdict};
use crate::error::{Cause, Error};
use crate::gostr::quote;
use crate::user::UserInfo;
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview, SelfSubjectRulesReview,
    SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus, SubjectRulesReviewStatus,
};

const GROUP: &str = "authorization.k8s.io";

fn s(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn field_requirements(ra: &ResourceAttributes) -> Vec<FieldRequirement> {
    let Some(fs) = &ra.field_selector else { return Vec::new() };
    if let Some(reqs) = &fs.requirements
        && !reqs.is_empty()
    {
        return reqs
            .iter()
            .filter_map(|r| {
                let values = r.values.as_deref().unwrap_or(&[]);
                let op = match (r.operator.as_str(), values) {
                    ("In", [_]) => FieldOp::Equals,
                    ("NotIn", [_]) => FieldOp::NotEquals,
                    _ => return None,
                };
                Some(FieldRequirement { field: r.key.clone(), op, value: values[0].clone() })
            })
            .collect();
    }
    fs.raw_selector.as_deref().map(parse_field_selector).unwrap_or_default()
}

/// kube's `ResourceAttributesFrom`: the version defaults to `*`.
pub fn resource_attributes(user: UserInfo, ra: &ResourceAttributes) -> Attributes {
    let version = s(&ra.version);
    Attributes {
        user,
        verb: s(&ra.verb),
        namespace: s(&ra.namespace),
        api_group: s(&ra.group),
        api_version: if version.is_empty() { "*".into() } else { version },
        resource: s(&ra.resource),
        subresource: s(&ra.subresource),
        name: s(&ra.name),
        resource_request: true,
        field_selector: field_requirements(ra),
        label_selector: ra.label_selector.as_ref().and_then(|l| l.raw_selector.clone()).unwrap_or_default(),
        path: String::new(),
    }
}

/// kube's `NonResourceAttributesFrom`.
pub fn non_resource_attributes(user: UserInfo, na: &NonResourceAttributes) -> Attributes {
    Attributes::non_resource(user, &s(&na.verb), &s(&na.path))
}

fn status(v: Verdict) -> SubjectAccessReviewStatus {
    SubjectAccessReviewStatus {
        allowed: v.decision == Decision::Allow,
        denied: (v.decision == Decision::Deny).then_some(true),
        reason: (!v.reason.is_empty()).then_some(v.reason),
        evaluation_error: (!v.error.is_empty()).then_some(v.error),
    }
}

fn invalid(kind: &str, name: &str, field: &str, value: &str, detail: &str) -> Error {
    Error::Invalid {
        group: GROUP.into(),
        kind: kind.into(),
        name: name.into(),
        causes: vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {detail}"),
            field: field.into(),
        }],
    }
}

fn exactly_one(kind: &str, ra: &Option<ResourceAttributes>, na: &Option<NonResourceAttributes>) -> Result<(), Error> {
    match (ra, na) {
        (Some(_), Some(_)) => {
            Err(invalid(kind, "", "spec.nonResourceAttributes", "\"\"", "cannot be specified in combination with resourceAttributes"))
        }
        (None, None) => Err(invalid(
            kind,
            "",
            "spec.resourceAttributes",
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => Ok(()),
    }
}

fn attributes_for(user: UserInfo, ra: &Option<ResourceAttributes>, na: &Option<NonResourceAttributes>) -> Attributes {
    match (ra, na) {
        (Some(ra), _) => resource_attributes(user, ra),
        (None, Some(na)) => non_resource_attributes(user, na),
        (None, None) => Attributes { user, ..Default::default() },
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` by `user`.
pub fn self_subject_access_review(
    authz: &dyn Authorizer,
    user: &UserInfo,
    mut review: SelfSubjectAccessReview,
) -> Result<SelfSubjectAccessReview, Error> {
    exactly_one("SelfSubjectAccessReview", &review.spec.resource_attributes, &review.spec.non_resource_attributes)?;
    let attrs = attributes_for(user.clone(), &review.spec.resource_attributes, &review.spec.non_resource_attributes);
    review.status = Some(status(authz.authorize(&attrs)));
    Ok(review)
}

fn spec_user(spec: &SubjectAccessReviewSpec) -> UserInfo {
    UserInfo {
        name: s(&spec.user),
        uid: s(&spec.uid),
        groups: spec.groups.clone().unwrap_or_default(),
        extra: spec.extra.clone().unwrap_or_default(),
    }
}

fn validate_spec(kind: &str, spec: &SubjectAccessReviewSpec) -> Result<(), Error> {
    exactly_one(kind, &spec.resource_attributes, &spec.non_resource_attributes)?;
    if s(&spec.user).is_empty() && spec.groups.as_deref().unwrap_or(&[]).is_empty() {
        return Err(invalid(kind, "", "spec.user", &quote(&s(&spec.user)), "at least one of user or group must be specified"));
    }
    Ok(())
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`.
pub fn subject_access_review(authz: &dyn Authorizer, mut review: SubjectAccessReview) -> Result<SubjectAccessReview, Error> {
    validate_spec("SubjectAccessReview", &review.spec)?;
    let attrs = attributes_for(spec_user(&review.spec), &review.spec.resource_attributes, &review.spec.non_resource_attributes);
    review.status = Some(status(authz.authorize(&attrs)));
    Ok(review)
}

/// `POST /apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews`.
pub fn local_subject_access_review(
    authz: &dyn Authorizer,
    namespace: &str,
    mut review: LocalSubjectAccessReview,
) -> Result<LocalSubjectAccessReview, Error> {
    if namespace.is_empty() {
        return Err(Error::BadRequest("namespace is required on this type: ".into()));
    }
    validate_spec("LocalSubjectAccessReview", &review.spec)?;
    if review.spec.non_resource_attributes.is_some() {
        return Err(invalid("LocalSubjectAccessReview", "", "spec.nonResourceAttributes", "\"\"", "disallowed on this kind of request"));
    }
    let ra_ns = review.spec.resource_attributes.as_ref().and_then(|r| r.namespace.clone()).unwrap_or_default();
    if ra_ns != namespace {
        return Err(Error::BadRequest(format!("spec.resourceAttributes.namespace must match namespace: {namespace}")));
    }
    let attrs = attributes_for(spec_user(&review.spec), &review.spec.resource_attributes, &review.spec.non_resource_attributes);
    review.status = Some(status(authz.authorize(&attrs)));
    Ok(review)
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews` by `user` (what
/// `kubectl auth can-i --list` prints from).
pub fn self_subject_rules_review(
    authz: &dyn Authorizer,
    user: &UserInfo,
    mut review: SelfSubjectRulesReview,
) -> Result<SelfSubjectRulesReview, Error> {
    let namespace = s(&review.spec.namespace);
    if namespace.is_empty() {
        return Err(Error::BadRequest("no namespace on request".into()));
    }
    let rules = authz.rules_for(user, &namespace);
    review.status = Some(SubjectRulesReviewStatus {
        resource_rules: rules.resource_rules,
        non_resource_rules: rules.non_resource_rules,
        incomplete: rules.incomplete,
        evaluation_error: (!rules.error.is_empty()).then_some(rules.error),
    });
    Ok(review)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{Chain, Mode};
    use crate::node::SharedGraph;
    use crate::rbac::SharedPolicy;
    use crate::rbac::bootstrap::default_policy;
    use serde_json::json;

    fn chain() -> Chain {
        let policy = SharedPolicy::new(default_policy(true).into_policy());
        policy.update(|p| {
            p.upsert_role_binding(
                serde_json::from_value(json!({
                    "metadata": {"name": "jane-edit", "namespace": "dev"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]
                }))
                .unwrap(),
            )
        });
        Chain::new(&[Mode::Node, Mode::Rbac], &policy, &SharedGraph::default())
    }

    fn jane() -> UserInfo {
        UserInfo::new("jane", &["system:authenticated"])
    }

    fn ssar(v: serde_json::Value) -> SelfSubjectAccessReview {
        serde_json::from_value(json!({"spec": v})).unwrap()
    }

    #[test]
    fn can_i_answers_like_kube() {
        let c = chain();
        let yes = self_subject_access_review(
            &c,
            &jane(),
            ssar(json!({"resourceAttributes": {"namespace": "dev", "verb": "create", "group": "apps", "resource": "deployments"}})),
        )
        .unwrap();
        let st = yes.status.unwrap();
        assert!(st.allowed);
        assert_eq!(st.reason.as_deref(), Some(r#"RBAC: allowed by RoleBinding "jane-edit/dev" of ClusterRole "edit" to User "jane""#));
        let no = self_subject_access_review(
            &c,
            &jane(),
            ssar(json!({"resourceAttributes": {"namespace": "prod", "verb": "create", "group": "apps", "resource": "deployments"}})),
        )
        .unwrap();
        assert_eq!(no.status.unwrap(), SubjectAccessReviewStatus { allowed: false, denied: None, reason: None, evaluation_error: None });
        let url =
            self_subject_access_review(&c, &jane(), ssar(json!({"nonResourceAttributes": {"verb": "get", "path": "/healthz"}}))).unwrap();
        assert!(url.status.unwrap().allowed);
        let err = self_subject_access_review(&c, &jane(), ssar(json!({}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"#
        );
    }

    #[test]
    fn subject_access_review_uses_the_spec_user() {
        let c = chain();
        let sar: SubjectAccessReview = serde_json::from_value(json!({"spec": {"user": "jane", "groups": ["system:authenticated"],
            "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "secrets"}}}))
        .unwrap();
        assert!(subject_access_review(&c, sar).unwrap().status.unwrap().allowed);
        let anonymous: SubjectAccessReview =
            serde_json::from_value(json!({"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}})).unwrap();
        let err = subject_access_review(&c, anonymous).unwrap_err();
        assert!(err.to_string().ends_with(r#"spec.user: Invalid value: "": at least one of user or group must be specified"#), "{err}");
        let lsar: LocalSubjectAccessReview = serde_json::from_value(json!({"spec": {"user": "jane",
            "resourceAttributes": {"namespace": "prod", "verb": "get", "resource": "secrets"}}}))
        .unwrap();
        assert_eq!(local_subject_access_review(&c, "dev", lsar).unwrap_err().code(), 400);
    }

    #[test]
    fn rules_review_lists_what_rbac_grants() {
        let c = chain();
        let review: SelfSubjectRulesReview = serde_json::from_value(json!({"spec": {"namespace": "dev"}})).unwrap();
        let st = self_subject_rules_review(&c, &jane(), review).unwrap().status.unwrap();
        assert!(!st.incomplete);
        assert!(
            st.resource_rules
                .iter()
                .any(|r| r.resources.as_deref()
                    == Some(&["selfsubjectaccessreviews".to_string(), "selfsubjectrulesreviews".to_string()][..]))
        );
        assert!(
            st.resource_rules
                .iter()
                .any(|r| r.api_groups.as_deref() == Some(&["apps".to_string()][..]) && r.verbs.contains(&"create".to_string()))
        );
        assert!(st.non_resource_rules.iter().any(|r| r.non_resource_urls.as_deref().unwrap_or(&[]).contains(&"/api/*".to_string())));
        let node = UserInfo::new("system:node:n1", &["system:nodes", "system:authenticated"]);
        let review: SelfSubjectRulesReview = serde_json::from_value(json!({"spec": {"namespace": "dev"}})).unwrap();
        let st = self_subject_rules_review(&c, &node, review).unwrap().status.unwrap();
        assert!(st.incomplete);
        assert_eq!(st.evaluation_error.as_deref(), Some("node authorizer does not support user rule resolution"));
        let none: SelfSubjectRulesReview = serde_json::from_value(json!({"spec": {}})).unwrap();
        assert_eq!(self_subject_rules_review(&c, &jane(), none).unwrap_err().to_string(), "no namespace on request");
    }
}
