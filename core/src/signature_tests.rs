use super::*;

fn field(name: &str, ty: &str, shape: Option<Vec<i64>>, optional: bool) -> SignatureField {
    SignatureField {
        name: name.into(),
        type_: ty.into(),
        shape,
        optional,
    }
}

fn sig(inputs: Vec<SignatureField>, outputs: Vec<SignatureField>) -> Signature {
    Signature { inputs, outputs }
}

fn current() -> Signature {
    sig(
        vec![
            field("age", "long", None, false),
            field("image", "float32", Some(vec![-1, 224, 224, 3]), false),
            field("region", "string", None, true),
        ],
        vec![
            field("score", "double", None, false),
            field("embedding", "float32", Some(vec![-1, 128]), false),
        ],
    )
}

fn described(a: &Signature, b: &Signature) -> Vec<String> {
    diff(a, b).iter().map(Difference::describe).collect()
}

#[test]
fn the_same_signature_has_no_difference() {
    assert!(diff(&current(), &current()).is_empty());
    assert!(compatible(&current(), &current()));
}

#[test]
fn what_callers_do_not_notice_is_compatible() {
    let mut next = current();
    next.inputs.retain(|f| f.name != "region"); // dropped: callers may still send it
    next.inputs.push(field("locale", "string", None, true)); // new, optional
    next.inputs[0].optional = true; // required → optional
    next.inputs[1].shape = Some(vec![-1, -1, -1, 3]); // accepts more
    next.outputs.push(field("label", "string", None, false)); // new output
    next.outputs[1].shape = Some(vec![4, 128]); // within [-1, 128]
    assert_eq!(
        described(&current(), &next),
        [
            "input `age` now optional (compatible)",
            "input `image` reshaped [-1, 224, 224, 3] → [-1, -1, -1, 3] (compatible)",
            "input `locale` added (optional) (compatible)",
            "input `region` removed (compatible)",
            "output `embedding` reshaped [-1, 128] → [4, 128] (compatible)",
            "output `label` added (required) (compatible)",
        ]
    );
    assert!(compatible(&current(), &next));
}

#[test]
fn what_callers_notice_breaks_them() {
    type Change = Box<dyn Fn(&mut Signature)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "input `age` retyped long → double (breaks callers)",
            Box::new(|s| s.inputs[0].type_ = "double".into()),
        ),
        (
            "input `country` added (required) (breaks callers)",
            Box::new(|s| s.inputs.push(field("country", "string", None, false))),
        ),
        (
            "input `region` now required (breaks callers)",
            Box::new(|s| s.inputs[2].optional = false),
        ),
        (
            "input `image` reshaped [-1, 224, 224, 3] → [1, 224, 224, 3] (breaks callers)",
            Box::new(|s| s.inputs[1].shape = Some(vec![1, 224, 224, 3])),
        ),
        (
            "input `image` reshaped [-1, 224, 224, 3] → [-1, 224, 224] (breaks callers)",
            Box::new(|s| s.inputs[1].shape = Some(vec![-1, 224, 224])),
        ),
        (
            "input `age` reshaped any shape → [1] (breaks callers)",
            Box::new(|s| s.inputs[0].shape = Some(vec![1])),
        ),
        (
            "output `score` removed (breaks callers)",
            Box::new(|s| s.outputs.retain(|f| f.name != "score")),
        ),
        (
            "output `score` now optional (breaks callers)",
            Box::new(|s| s.outputs[0].optional = true),
        ),
        (
            "output `embedding` reshaped [-1, 128] → [-1, 256] (breaks callers)",
            Box::new(|s| s.outputs[1].shape = Some(vec![-1, 256])),
        ),
        (
            "output `embedding` reshaped [-1, 128] → any shape (breaks callers)",
            Box::new(|s| s.outputs[1].shape = None),
        ),
    ];
    for (want, change) in cases {
        let mut next = current();
        change(&mut next);
        assert_eq!(described(&current(), &next), [want]);
        assert!(!compatible(&current(), &next), "{want}");
    }
}

#[test]
fn an_optional_output_may_go() {
    let mut now = current();
    now.outputs[0].optional = true;
    let mut next = now.clone();
    next.outputs.remove(0);
    assert_eq!(
        described(&now, &next),
        ["output `score` removed (compatible)"]
    );
}

#[test]
fn problems_name_the_field_and_what_to_write() {
    let s = sig(
        vec![
            field("a", "float32", Some(vec![-1, 0]), false),
            field("a", "flaot32", Some(vec![-2]), false),
            field(" ", "long", None, false),
            field("a`\n<!--", "long", None, false),
        ],
        vec![field("a", "double", None, false)],
    );
    let got = problems("spec.signature", &s);
    let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.signature.inputs[0].shape[1]",
            "spec.signature.inputs[1].name",
            "spec.signature.inputs[1].type",
            "spec.signature.inputs[1].shape[0]",
            "spec.signature.inputs[2].name",
            "spec.signature.inputs[3].name",
        ]
    );
    assert!(got[1].1.contains("named twice among the inputs"), "{got:?}");
    assert!(got[2].1.starts_with("`flaot32` is not a type"), "{got:?}");
    assert!(got[2].1.contains("float32"), "{got:?}");
    assert!(got[3].1.contains("-1 for any"), "{got:?}");
    assert!(
        got[5].1.starts_with("a field's name is at most 128"),
        "{got:?}"
    );
    assert!(!got[5].1.contains("<!--"), "{got:?}");
    assert!(problems("spec.signature", &current()).is_empty());
}
