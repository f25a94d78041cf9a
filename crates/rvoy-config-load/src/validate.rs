//! `validate.rules` (protoc-gen-validate) enforcement over a [`DynamicMessage`],
//! and Envoy's global duration rule.
//!
//! Owns what Envoy's `MessageUtil::validate` checks on a loaded proto:
//! - every PGV annotation with the semantics of PGV's C++ generator (the code
//!   Envoy links): proto3 scalars are checked even when unset (`min_len: 1`
//!   fails an empty string), message fields only when set (except
//!   `message.required`), members of a oneof only when that member is set,
//!   wrapper types get the scalar rules of their `value` when set, and
//!   `message.skip`, an `any`/`duration`/`timestamp` rule set, or a message-level
//!   `validate.disabled`/`ignored` stop the recursion where PGV's C++ does;
//! - the contents of every `google.protobuf.Any` (and of a `TypedStruct` whose
//!   type the pool knows), validated as the message they hold, since Envoy
//!   validates each typed config when it instantiates it;
//! - `MessageUtil::validateDurationFields`: every set `Duration`, anywhere, must
//!   be non-negative and within protobuf's range.
//!
//! Rules are compiled once per message type (typed rule structs, precompiled
//! regexes) into a per-pool table, with a flag telling whether anything below a
//! type can fail at all, so that big configs cost one pass over their set
//! fields. RE2 patterns are run with the `regex` crate after rewriting RE2's
//! ASCII-only Perl classes (`\d`, `\w`, `\s`); a pattern the crate cannot
//! compile is not enforced.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Display, Write as _};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, Kind,
    MapKey, MessageDescriptor, ReflectMessage as _, Value,
};
use regex::Regex;
use rvoy_api::validate as pgv;

use crate::error::{ConfigError, ErrorKind, FieldPath, Seg};
use crate::node::Node;
use crate::proto_json::{ANY, TYPED_STRUCT_UDPA, TYPED_STRUCT_XDS, parse_message};

/// Validates `msg` (and everything under it) against its `validate.rules` and
/// Envoy's duration rule. `path` is where `msg` stands in the config; each error
/// names the offending field below it. Duration errors come first, as Envoy
/// checks durations before PGV rules.
pub fn validate(msg: &DynamicMessage, path: &FieldPath) -> Vec<ConfigError> {
    let desc = msg.descriptor();
    let table = TypeTable::<MessagePlan>::for_pool(&TABLES, desc.parent_pool());
    let mut walker = Walker {
        table,
        path: path.clone(),
        durations: Vec::new(),
        errors: Vec::new(),
        depth: 0,
    };
    walker.message(msg, true);
    let mut out = walker.durations;
    out.append(&mut walker.errors);
    out
}

/// Deepest message nesting walked (protobuf's own recursion limit, which
/// Envoy's parser applies too); protects the stack from hostile input.
const MAX_DEPTH: usize = 100;

const DURATION: &str = "google.protobuf.Duration";
const TIMESTAMP: &str = "google.protobuf.Timestamp";
/// protobuf's `TimeUtil::kDurationMaxSeconds`.
const DURATION_MAX_SECONDS: i64 = 315_576_000_000;

// ---------------------------------------------------------------------------
// Per-type tables, shared with the deprecation checks.

/// A message type's compiled checks, as kept in a [`TypeTable`].
pub(crate) trait TypePlan: Send + Sync + Sized + 'static {
    /// What compiling needs from the pool (extension descriptors...).
    type Ctx: Send + Sync;
    fn context(pool: &DescriptorPool) -> Self::Ctx;
    fn compile(desc: &MessageDescriptor, ctx: &Self::Ctx) -> Self;
    /// Whether a message of this type can yield something by itself.
    fn interesting(&self) -> bool;
    /// The message types of its message-typed fields (elements, map values).
    fn children(&self) -> &[MessageDescriptor];
}

/// The compiled plans of one pool's message types, by descriptor index, and
/// whether anything under each type is worth walking.
pub(crate) struct TypeTable<P: TypePlan> {
    pool: DescriptorPool,
    ctx: P::Ctx,
    /// Message type slots, keyed by the address of the type's full name (a
    /// string the pool stores once per type).
    slots: HashMap<usize, usize, BuildHasherDefault<AddrHasher>>,
    plans: Vec<OnceLock<Arc<P>>>,
    visit: Vec<OnceLock<bool>>,
    closure: Mutex<()>,
}

/// The tables of one plan type, one per descriptor pool seen.
pub(crate) type Tables<P> = LazyLock<Mutex<Vec<Arc<TypeTable<P>>>>>;

static TABLES: Tables<MessagePlan> = LazyLock::new(|| Mutex::new(Vec::new()));

/// Forgets every pool's table (see `crate::release_caches`).
pub(crate) fn release_tables() {
    TABLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
}

impl<P: TypePlan> TypeTable<P> {
    /// The table of `pool` in `tables`, created on first use.
    pub(crate) fn for_pool(tables: &Mutex<Vec<Arc<Self>>>, pool: &DescriptorPool) -> Arc<Self> {
        let mut tables = tables.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = tables.iter().find(|t| &t.pool == pool) {
            return t.clone();
        }
        let slots: HashMap<usize, usize, BuildHasherDefault<AddrHasher>> = pool
            .all_messages()
            .enumerate()
            .map(|(i, m)| (name_key(&m), i))
            .collect();
        let n = slots.len();
        let table = Arc::new(TypeTable {
            pool: pool.clone(),
            ctx: P::context(pool),
            slots,
            plans: (0..n).map(|_| OnceLock::new()).collect(),
            visit: (0..n).map(|_| OnceLock::new()).collect(),
            closure: Mutex::new(()),
        });
        tables.push(table.clone());
        table
    }

    fn slot(&self, desc: &MessageDescriptor) -> Option<usize> {
        if desc.parent_pool() != &self.pool {
            return None;
        }
        self.slots.get(&name_key(desc)).copied()
    }

    /// The plan of `desc`'s type if a message of that type is worth walking.
    pub(crate) fn walkable(&self, desc: &MessageDescriptor) -> Option<Arc<P>> {
        let known = self.slot(desc).and_then(|i| {
            Some((
                self.visit.get(i)?.get().copied()?,
                self.plans.get(i)?.get()?,
            ))
        });
        match known {
            Some((false, _)) => None,
            Some((true, plan)) => Some(plan.clone()),
            None => self.visit(desc).then(|| self.plan(desc)),
        }
    }

    /// The compiled plan of `desc`'s type.
    pub(crate) fn plan(&self, desc: &MessageDescriptor) -> Arc<P> {
        match self.slot(desc).and_then(|i| self.plans.get(i)) {
            Some(cell) => cell
                .get_or_init(|| Arc::new(P::compile(desc, &self.ctx)))
                .clone(),
            None => Arc::new(P::compile(desc, &self.ctx)),
        }
    }

    /// Whether a message of `desc`'s type, or anything reachable under it, is
    /// interesting (computed once per type over the reachable type graph).
    pub(crate) fn visit(&self, desc: &MessageDescriptor) -> bool {
        let Some(cell) = self.slot(desc).and_then(|i| self.visit.get(i)) else {
            return true;
        };
        if let Some(v) = cell.get() {
            return *v;
        }
        let _guard = self.closure.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = cell.get() {
            return *v;
        }
        // Every type reachable from `desc` whose answer is not known yet.
        let mut order: Vec<(usize, Arc<P>)> = Vec::new();
        // Looked up for every edge on every round of the fixpoint below:
        // slot numbers are small integers, SipHash was 13 % of a small
        // config's start-up.
        let mut slot: HashMap<usize, usize, BuildHasherDefault<AddrHasher>> = HashMap::default();
        let mut stack = vec![desc.clone()];
        while let Some(d) = stack.pop() {
            let Some(i) = self.slot(&d) else { continue };
            if slot.contains_key(&i) || self.visit.get(i).is_none_or(|c| c.get().is_some()) {
                continue;
            }
            let plan = self.plan(&d);
            stack.extend(plan.children().iter().cloned());
            slot.insert(i, order.len());
            order.push((i, plan));
        }
        let mut value: Vec<bool> = order.iter().map(|(_, p)| p.interesting()).collect();
        loop {
            let mut changed = false;
            for (k, (_, plan)) in order.iter().enumerate() {
                if value[k] {
                    continue;
                }
                let reaches = plan.children().iter().any(|c| {
                    let i = self.slot(c);
                    match i.and_then(|i| slot.get(&i)) {
                        Some(&s) => value[s],
                        None => i
                            .and_then(|i| self.visit.get(i))
                            .and_then(|x| x.get().copied())
                            .unwrap_or(true),
                    }
                });
                if reaches {
                    value[k] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for ((i, _), v) in order.iter().zip(&value) {
            if let Some(c) = self.visit.get(*i) {
                let _ = c.set(*v);
            }
        }
        cell.get().copied().unwrap_or(true)
    }
}

/// A hasher for addresses (the slot keys): one multiply, no SipHash.
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

/// The key of a message type in its pool: the address of its full name.
fn name_key(desc: &MessageDescriptor) -> usize {
    desc.full_name().as_ptr() as usize
}

/// Message types the walkers treat specially.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    Any,
    Duration,
    TypedStruct,
}

impl Special {
    pub(crate) fn of(desc: &MessageDescriptor) -> Special {
        match desc.full_name() {
            ANY => Special::Any,
            DURATION => Special::Duration,
            TYPED_STRUCT_UDPA | TYPED_STRUCT_XDS => Special::TypedStruct,
            _ => Special::None,
        }
    }
}

/// The message an `Any` holds, when the pool knows its type and it decodes.
pub(crate) fn unpack_any(any: &DynamicMessage) -> Option<Arc<DynamicMessage>> {
    let type_url = any.get_field_by_number(1)?;
    let type_url = type_url.as_str()?;
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    let desc = any.descriptor().parent_pool().get_message_by_name(name)?;
    let value = any.get_field_by_number(2)?;
    let bytes = value.as_bytes()?;
    crate::any::decode_shared(&desc, bytes.as_ref()).ok()
}

/// The message a `TypedStruct` describes (its `value` read as its `type_url`),
/// when the pool knows the type. Reading mistakes are reported by the loader.
pub(crate) fn unpack_typed_struct(ts: &DynamicMessage) -> Option<DynamicMessage> {
    let type_url = ts.get_field_by_name("type_url")?;
    let type_url = type_url.as_str()?;
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    let pool = ts.descriptor().parent_pool().clone();
    let desc = pool.get_message_by_name(name)?;
    let json = match ts.get_field_by_name("value").as_deref() {
        Some(Value::Message(s)) => struct_to_json(s),
        _ => serde_json::Value::Object(serde_json::Map::new()),
    };
    let node = Node::from_json(&json);
    Some(parse_message(&pool, &node, &desc, None, FieldPath::root()).message)
}

/// A `google.protobuf.Struct` as JSON.
fn struct_to_json(s: &DynamicMessage) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let Some(Value::Map(fields)) = s.get_field_by_number(1).as_deref() {
        for (k, v) in fields {
            if let (MapKey::String(k), Value::Message(v)) = (k, v) {
                out.insert(k.clone(), value_to_json(v));
            }
        }
    }
    serde_json::Value::Object(out)
}

/// A `google.protobuf.Value` as JSON.
fn value_to_json(v: &DynamicMessage) -> serde_json::Value {
    if let Some((field, value)) = v.fields().next() {
        return match (field.number(), value) {
            (2, Value::F64(f)) => {
                if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 {
                    serde_json::Value::from(*f as i64)
                } else {
                    serde_json::Number::from_f64(*f)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number)
                }
            }
            (3, Value::String(s)) => serde_json::Value::String(s.clone()),
            (4, Value::Bool(b)) => serde_json::Value::Bool(*b),
            (5, Value::Message(s)) => struct_to_json(s),
            (6, Value::Message(l)) => match l.get_field_by_number(1).as_deref() {
                Some(Value::List(items)) => serde_json::Value::Array(
                    items
                        .iter()
                        .map(|i| match i {
                            Value::Message(m) => value_to_json(m),
                            _ => serde_json::Value::Null,
                        })
                        .collect(),
                ),
                _ => serde_json::Value::Array(Vec::new()),
            },
            _ => serde_json::Value::Null,
        };
    }
    serde_json::Value::Null
}

// ---------------------------------------------------------------------------
// Compiled rules.

/// The extensions PGV annotates with.
struct Exts {
    rules: Option<ExtensionDescriptor>,
    disabled: Option<ExtensionDescriptor>,
    ignored: Option<ExtensionDescriptor>,
    required: Option<ExtensionDescriptor>,
}

/// One message type's PGV plan.
struct MessagePlan {
    special: Special,
    /// `validate.disabled` or `validate.ignored`: PGV checks nothing here, nor below.
    disabled: bool,
    /// Checks in PGV's order: plain fields, proto3 `optional` fields, then
    /// each real oneof's members followed by its `required` check.
    items: Vec<Item>,
    children: Vec<MessageDescriptor>,
    interesting: bool,
}

enum Item {
    Field(FieldPlan),
    OneofRequired {
        name: String,
        members: Vec<FieldDescriptor>,
    },
}

struct FieldPlan {
    fd: FieldDescriptor,
    name: Arc<str>,
    /// A oneof member (real or synthetic): checked only when set.
    gated: bool,
    /// Whether PGV rules here can fail.
    checks: bool,
    shape: Shape,
    /// Whether the message type of the field (elements, values) is worth
    /// walking; resolved on first use.
    child_walks: OnceLock<bool>,
}

enum Shape {
    /// A scalar, enum or message field. `child` is the message type, if any.
    Single {
        rules: Rules,
        child: Option<MessageDescriptor>,
    },
    List {
        rules: Option<RepRules>,
        items: Rules,
        child: Option<MessageDescriptor>,
    },
    Map {
        rules: Option<MapRules>,
        keys: Rules,
        values: Rules,
        child: Option<MessageDescriptor>,
    },
}

/// The rules of one value (a field, a list element, a map key or value), as
/// PGV's `resolveRules` picks the template.
enum Rules {
    None,
    /// A message without type rules: `required`, and recursion unless `skip`.
    Message {
        required: bool,
        skip: bool,
    },
    /// Scalar rules on a wrapper type (`google.protobuf.UInt32Value`...).
    Wrapper {
        required: bool,
        inner: Box<Rules>,
    },
    Num(Box<NumRules>),
    Bool(Option<bool>),
    Str(Box<StrRules>),
    Bytes(Box<BytesRules>),
    Enum(Box<EnumRules>),
    Any(Box<AnyRules>),
    Duration(Box<DurRules>),
    Timestamp(Box<TsRules>),
}

impl Rules {
    /// Whether checking a value with these rules can fail.
    fn checks(&self) -> bool {
        !matches!(
            self,
            Rules::None
                | Rules::Message {
                    required: false,
                    ..
                }
        )
    }

    /// Whether PGV validates the message held by a value with these rules.
    fn recurses(&self) -> bool {
        matches!(self, Rules::Message { skip: false, .. })
    }
}

enum NumRules {
    I(Num<i64>),
    U(Num<u64>),
    F(Num<f64>),
}

struct Num<T> {
    konst: Option<T>,
    lt: Option<T>,
    lte: Option<T>,
    gt: Option<T>,
    gte: Option<T>,
    in_: Vec<T>,
    not_in: Vec<T>,
    ignore_empty: bool,
}

struct StrRules {
    konst: Option<String>,
    len: Option<u64>,
    min_len: Option<u64>,
    max_len: Option<u64>,
    len_bytes: Option<u64>,
    min_bytes: Option<u64>,
    max_bytes: Option<u64>,
    pattern: Option<Pattern>,
    prefix: Option<String>,
    suffix: Option<String>,
    contains: Option<String>,
    not_contains: Option<String>,
    in_: Vec<String>,
    not_in: Vec<String>,
    well_known: Option<WellKnown>,
    ignore_empty: bool,
}

/// A `pattern` (or `well_known_regex`, which PGV turns into one), compiled
/// when a value is first checked against it: most fields that carry one are
/// never set, and compiling their regexes was a tenth of loading a config.
struct Pattern {
    regex: PatternRegex,
    /// The message when the value does not match.
    message: String,
}

enum PatternRegex {
    /// One of PGV's well-known header patterns.
    Header(HeaderPattern),
    /// The field's own pattern, translated from RE2 to the `regex` syntax.
    Own {
        source: String,
        compiled: OnceLock<Option<Regex>>,
    },
}

impl Pattern {
    /// Whether `value` matches; `None` when the `regex` crate cannot compile
    /// the field's own pattern (then it is not enforced).
    fn is_match(&self, value: &str) -> Option<bool> {
        match &self.regex {
            PatternRegex::Header(header) => Some(header.is_match(value)),
            PatternRegex::Own { source, compiled } => compiled
                .get_or_init(|| compile_re2(source).and_then(|p| Regex::new(&p).ok()))
                .as_ref()
                .map(|re| re.is_match(value)),
        }
    }
}

/// PGV's well-known header regexes (`module/checker.go`), checked byte by
/// byte: each is a character class over ASCII, so this is what the regex
/// says without compiling one (a regex build was 2 % of start-up).
#[derive(Clone, Copy, Debug)]
enum HeaderPattern {
    /// `^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$`
    Name,
    /// `^[^\x00-\x08\x0A-\x1F\x7F]*$`
    Value,
    /// `^[^\x00\x0A\x0D]*$`
    String,
}

impl HeaderPattern {
    fn is_match(self, value: &str) -> bool {
        match self {
            HeaderPattern::Name => {
                let name = value.strip_prefix(':').unwrap_or(value).as_bytes();
                !name.is_empty()
                    && name
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_|~`".contains(b))
            }
            HeaderPattern::Value => !value
                .bytes()
                .any(|b| matches!(b, 0x00..=0x08 | 0x0A..=0x1F | 0x7F)),
            HeaderPattern::String => !value.bytes().any(|b| matches!(b, 0x00 | 0x0A | 0x0D)),
        }
    }
}

#[derive(Clone, Copy)]
enum WellKnown {
    Email,
    Hostname,
    Ip,
    Ipv4,
    Ipv6,
    Uri,
    UriRef,
    Address,
    Uuid,
}

struct BytesRules {
    konst: Option<Vec<u8>>,
    len: Option<u64>,
    min_len: Option<u64>,
    max_len: Option<u64>,
    pattern: Option<(Option<regex::bytes::Regex>, String)>,
    prefix: Option<Vec<u8>>,
    suffix: Option<Vec<u8>>,
    contains: Option<Vec<u8>>,
    in_: Vec<Vec<u8>>,
    not_in: Vec<Vec<u8>>,
    well_known: Option<WellKnown>,
    ignore_empty: bool,
}

struct EnumRules {
    desc: Option<EnumDescriptor>,
    konst: Option<i32>,
    defined_only: bool,
    in_: Vec<i32>,
    not_in: Vec<i32>,
}

struct RepRules {
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique: bool,
    ignore_empty: bool,
}

struct MapRules {
    min_pairs: Option<u64>,
    max_pairs: Option<u64>,
    ignore_empty: bool,
}

struct AnyRules {
    required: bool,
    in_: Vec<String>,
    not_in: Vec<String>,
}

/// A duration as protobuf compares them: seconds, then nanos.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Dur {
    seconds: i64,
    nanos: i32,
}

impl Dur {
    /// `SecondsToDuration(s) + NanosecondsToDuration(n)`, normalized.
    fn normalized(seconds: i64, nanos: i32) -> Dur {
        let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        Dur::from_nanos(total)
    }

    fn from_nanos(total: i128) -> Dur {
        let seconds = total / 1_000_000_000;
        let nanos = total % 1_000_000_000;
        Dur {
            seconds: seconds.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            nanos: nanos as i32,
        }
    }

    fn total_nanos(self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
    }

    fn of(d: &prost_types::Duration) -> Dur {
        Dur::normalized(d.seconds, d.nanos)
    }
}

impl Display for Dur {
    /// Go's `time.Duration.String()`, which PGV's messages use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&go_duration(self.total_nanos()))
    }
}

struct DurRules {
    required: bool,
    konst: Option<Dur>,
    lt: Option<Dur>,
    lte: Option<Dur>,
    gt: Option<Dur>,
    gte: Option<Dur>,
    in_: Vec<Dur>,
    not_in: Vec<Dur>,
}

struct TsRules {
    required: bool,
    konst: Option<Dur>,
    lt: Option<Dur>,
    lte: Option<Dur>,
    gt: Option<Dur>,
    gte: Option<Dur>,
    lt_now: bool,
    gt_now: bool,
    within: Option<Dur>,
}

impl TypePlan for MessagePlan {
    type Ctx = Exts;

    fn context(pool: &DescriptorPool) -> Exts {
        Exts {
            rules: pool.get_extension_by_name("validate.rules"),
            disabled: pool.get_extension_by_name("validate.disabled"),
            ignored: pool.get_extension_by_name("validate.ignored"),
            required: pool.get_extension_by_name("validate.required"),
        }
    }

    fn compile(desc: &MessageDescriptor, ctx: &Exts) -> MessagePlan {
        let special = Special::of(desc);
        let mut plan = MessagePlan {
            special,
            disabled: false,
            items: Vec::new(),
            children: Vec::new(),
            interesting: special != Special::None,
        };
        if special != Special::None {
            return plan;
        }
        let custom = rvoy_api::CustomOptions::of(desc);
        if let Some(options) = custom.message() {
            plan.disabled = [&ctx.disabled, &ctx.ignored]
                .into_iter()
                .flatten()
                .any(|ext| options.get_extension(ext).as_bool() == Some(true));
        }

        let mut plain = Vec::new();
        let mut synthetic = Vec::new();
        for fd in desc.fields() {
            let rules = field_rules(&fd, &custom, ctx.rules.as_ref());
            let shape = compile_shape(&fd, rules.as_ref());
            let (checks, child) = match &shape {
                Shape::Single { rules, child } => (rules.checks(), child.clone()),
                Shape::List {
                    rules,
                    items,
                    child,
                } => (rules.is_some() || items.checks(), child.clone()),
                Shape::Map {
                    rules,
                    keys,
                    values,
                    child,
                } => (
                    rules.is_some() || keys.checks() || values.checks(),
                    child.clone(),
                ),
            };
            if !checks && child.is_none() {
                continue;
            }
            if checks && !plan.disabled {
                plan.interesting = true;
            }
            if let Some(child) = child
                && !plan.children.iter().any(|c| c == &child)
            {
                plan.children.push(child);
            }
            let oneof = fd.containing_oneof();
            let field = FieldPlan {
                name: fd.name().into(),
                gated: oneof.is_some(),
                checks,
                fd,
                shape,
                child_walks: OnceLock::new(),
            };
            match oneof {
                None => plain.push(field),
                Some(o) if o.is_synthetic() => synthetic.push(field),
                Some(_) => plain.push(field),
            }
        }
        // Real oneof members go after the others, grouped by oneof.
        let (members, plain): (Vec<_>, Vec<_>) = plain
            .into_iter()
            .partition(|f| f.fd.containing_oneof().is_some_and(|o| !o.is_synthetic()));
        plan.items.extend(plain.into_iter().map(Item::Field));
        plan.items.extend(synthetic.into_iter().map(Item::Field));
        let mut members: Vec<Option<FieldPlan>> = members.into_iter().map(Some).collect();
        for oneof in desc.oneofs().filter(|o| !o.is_synthetic()) {
            for m in members.iter_mut() {
                if m.as_ref()
                    .and_then(|f| f.fd.containing_oneof())
                    .is_some_and(|o| o == oneof)
                    && let Some(f) = m.take()
                {
                    plan.items.push(Item::Field(f));
                }
            }
            let required = ctx.required.as_ref().is_some_and(|ext| {
                custom
                    .oneof(&oneof)
                    .is_some_and(|o| o.get_extension(ext).as_bool() == Some(true))
            });
            if required && !plan.disabled {
                plan.interesting = true;
                plan.items.push(Item::OneofRequired {
                    name: oneof.name().to_owned(),
                    members: oneof.fields().collect(),
                });
            }
        }
        plan
    }

    fn interesting(&self) -> bool {
        self.interesting
    }

    fn children(&self) -> &[MessageDescriptor] {
        &self.children
    }
}

/// The `validate.rules` of a field, if it has any.
fn field_rules(
    fd: &FieldDescriptor,
    custom: &rvoy_api::CustomOptions<'_>,
    ext: Option<&ExtensionDescriptor>,
) -> Option<pgv::FieldRules> {
    let ext = ext?;
    if let Some(encoded) = custom.encoded_field(fd.name()) {
        // Straight from the side table, with no dynamic message in between.
        return rvoy_api::decode_extension(encoded, ext.number());
    }
    let options = custom.field(fd)?;
    if !options.has_extension(ext) {
        return None;
    }
    match &*options.get_extension(ext) {
        Value::Message(m) => m.transcode_to::<pgv::FieldRules>().ok(),
        _ => None,
    }
}

fn message_kind(kind: &Kind) -> Option<MessageDescriptor> {
    match kind {
        Kind::Message(m) => Some(m.clone()),
        _ => None,
    }
}

fn compile_shape(fd: &FieldDescriptor, rules: Option<&pgv::FieldRules>) -> Shape {
    use pgv::field_rules::Type;
    let kind = fd.kind();
    if fd.is_map() {
        let Some(entry) = message_kind(&kind) else {
            return Shape::Single {
                rules: Rules::None,
                child: None,
            };
        };
        let key_kind = entry.map_entry_key_field().kind();
        let value_kind = entry.map_entry_value_field().kind();
        let child = message_kind(&value_kind);
        return match rules.and_then(|r| r.r#type.as_ref()) {
            Some(Type::Map(m)) => Shape::Map {
                rules: Some(MapRules {
                    min_pairs: m.min_pairs,
                    max_pairs: m.max_pairs,
                    ignore_empty: m.ignore_empty(),
                }),
                keys: resolve(&key_kind, m.keys.as_deref()),
                values: resolve(&value_kind, m.values.as_deref()),
                child,
            },
            _ => Shape::Map {
                rules: None,
                keys: Rules::None,
                values: resolve(&value_kind, None),
                child,
            },
        };
    }
    if fd.is_list() {
        let child = message_kind(&kind);
        return match rules.and_then(|r| r.r#type.as_ref()) {
            Some(Type::Repeated(r)) => Shape::List {
                rules: Some(RepRules {
                    min_items: r.min_items,
                    max_items: r.max_items,
                    unique: r.unique(),
                    ignore_empty: r.ignore_empty(),
                }),
                items: resolve(&kind, r.items.as_deref()),
                child,
            },
            _ => Shape::List {
                rules: None,
                items: resolve(&kind, None),
                child,
            },
        };
    }
    Shape::Single {
        rules: resolve(&kind, rules),
        child: message_kind(&kind),
    }
}

/// PGV's `resolveRules`: which template a value of `kind` gets from `rules`.
fn resolve(kind: &Kind, rules: Option<&pgv::FieldRules>) -> Rules {
    use pgv::field_rules::Type;
    let is_message = matches!(kind, Kind::Message(_));
    let message = rules.and_then(|r| r.message.as_ref());
    let required = message.is_some_and(|m| m.required());
    let Some(t) = rules.and_then(|r| r.r#type.as_ref()) else {
        if is_message {
            return Rules::Message {
                required,
                skip: message.is_some_and(|m| m.skip()),
            };
        }
        return Rules::None;
    };
    let scalar = match t {
        Type::Float(r) => num_f(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Double(r) => Rules::Num(Box::new(NumRules::F(Num {
            konst: r.r#const,
            lt: r.lt,
            lte: r.lte,
            gt: r.gt,
            gte: r.gte,
            in_: r.r#in.clone(),
            not_in: r.not_in.clone(),
            ignore_empty: r.ignore_empty(),
        }))),
        Type::Int32(r) => num_i(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Int64(r) => num_i(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Uint32(r) => num_u(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Uint64(r) => num_u(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Sint32(r) => num_i(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Sint64(r) => num_i(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Fixed32(r) => num_u(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Fixed64(r) => num_u(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Sfixed32(r) => num_i(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Sfixed64(r) => num_i(
            r.r#const,
            r.lt,
            r.lte,
            r.gt,
            r.gte,
            &r.r#in,
            &r.not_in,
            r.ignore_empty(),
        ),
        Type::Bool(r) => Rules::Bool(r.r#const),
        Type::String(r) => Rules::Str(Box::new(compile_str(r))),
        Type::Bytes(r) => Rules::Bytes(Box::new(compile_bytes(r))),
        Type::Enum(r) => {
            return Rules::Enum(Box::new(EnumRules {
                desc: match kind {
                    Kind::Enum(e) => Some(e.clone()),
                    _ => None,
                },
                konst: r.r#const,
                defined_only: r.defined_only(),
                in_: r.r#in.clone(),
                not_in: r.not_in.clone(),
            }));
        }
        Type::Any(r) => {
            return Rules::Any(Box::new(AnyRules {
                required: r.required(),
                in_: r.r#in.clone(),
                not_in: r.not_in.clone(),
            }));
        }
        Type::Duration(r) => {
            return Rules::Duration(Box::new(DurRules {
                required: r.required(),
                konst: r.r#const.as_ref().map(Dur::of),
                lt: r.lt.as_ref().map(Dur::of),
                lte: r.lte.as_ref().map(Dur::of),
                gt: r.gt.as_ref().map(Dur::of),
                gte: r.gte.as_ref().map(Dur::of),
                in_: r.r#in.iter().map(Dur::of).collect(),
                not_in: r.not_in.iter().map(Dur::of).collect(),
            }));
        }
        Type::Timestamp(r) => {
            let ts = |t: &prost_types::Timestamp| Dur::normalized(t.seconds, t.nanos);
            return Rules::Timestamp(Box::new(TsRules {
                required: r.required(),
                konst: r.r#const.as_ref().map(ts),
                lt: r.lt.as_ref().map(ts),
                lte: r.lte.as_ref().map(ts),
                gt: r.gt.as_ref().map(ts),
                gte: r.gte.as_ref().map(ts),
                lt_now: r.lt_now(),
                gt_now: r.gt_now(),
                within: r.within.as_ref().map(Dur::of),
            }));
        }
        // Collection rules on a single value: PGV rejects such protos.
        Type::Repeated(_) | Type::Map(_) => return Rules::None,
    };
    // Scalar rules on a message field: a wrapper type. (sint/fixed have no wrapper.)
    let wrappable = !matches!(
        t,
        Type::Sint32(_)
            | Type::Sint64(_)
            | Type::Fixed32(_)
            | Type::Fixed64(_)
            | Type::Sfixed32(_)
            | Type::Sfixed64(_)
    );
    if is_message && wrappable {
        Rules::Wrapper {
            required,
            inner: Box::new(scalar),
        }
    } else {
        scalar
    }
}

#[allow(clippy::too_many_arguments)]
fn num_i<T: Copy + Into<i64>>(
    konst: Option<T>,
    lt: Option<T>,
    lte: Option<T>,
    gt: Option<T>,
    gte: Option<T>,
    in_: &[T],
    not_in: &[T],
    ignore_empty: bool,
) -> Rules {
    Rules::Num(Box::new(NumRules::I(Num {
        konst: konst.map(Into::into),
        lt: lt.map(Into::into),
        lte: lte.map(Into::into),
        gt: gt.map(Into::into),
        gte: gte.map(Into::into),
        in_: in_.iter().map(|v| (*v).into()).collect(),
        not_in: not_in.iter().map(|v| (*v).into()).collect(),
        ignore_empty,
    })))
}

#[allow(clippy::too_many_arguments)]
fn num_u<T: Copy + Into<u64>>(
    konst: Option<T>,
    lt: Option<T>,
    lte: Option<T>,
    gt: Option<T>,
    gte: Option<T>,
    in_: &[T],
    not_in: &[T],
    ignore_empty: bool,
) -> Rules {
    Rules::Num(Box::new(NumRules::U(Num {
        konst: konst.map(Into::into),
        lt: lt.map(Into::into),
        lte: lte.map(Into::into),
        gt: gt.map(Into::into),
        gte: gte.map(Into::into),
        in_: in_.iter().map(|v| (*v).into()).collect(),
        not_in: not_in.iter().map(|v| (*v).into()).collect(),
        ignore_empty,
    })))
}

#[allow(clippy::too_many_arguments)]
fn num_f(
    konst: Option<f32>,
    lt: Option<f32>,
    lte: Option<f32>,
    gt: Option<f32>,
    gte: Option<f32>,
    in_: &[f32],
    not_in: &[f32],
    ignore_empty: bool,
) -> Rules {
    Rules::Num(Box::new(NumRules::F(Num {
        konst: konst.map(f64::from),
        lt: lt.map(f64::from),
        lte: lte.map(f64::from),
        gt: gt.map(f64::from),
        gte: gte.map(f64::from),
        in_: in_.iter().map(|v| f64::from(*v)).collect(),
        not_in: not_in.iter().map(|v| f64::from(*v)).collect(),
        ignore_empty,
    })))
}

static UUID: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$").ok()
});

fn compile_str(r: &pgv::StringRules) -> StrRules {
    use pgv::string_rules::WellKnown as W;
    let mut well_known = None;
    let mut pattern = r.pattern.as_deref().map(|p| Pattern {
        regex: PatternRegex::Own {
            source: p.to_owned(),
            compiled: OnceLock::new(),
        },
        message: format!("value does not match regex pattern {}", quote(p)),
    });
    match r.well_known {
        Some(W::Email(true)) => well_known = Some(WellKnown::Email),
        Some(W::Hostname(true)) => well_known = Some(WellKnown::Hostname),
        Some(W::Ip(true)) => well_known = Some(WellKnown::Ip),
        Some(W::Ipv4(true)) => well_known = Some(WellKnown::Ipv4),
        Some(W::Ipv6(true)) => well_known = Some(WellKnown::Ipv6),
        Some(W::Uri(true)) => well_known = Some(WellKnown::Uri),
        Some(W::UriRef(true)) => well_known = Some(WellKnown::UriRef),
        Some(W::Address(true)) => well_known = Some(WellKnown::Address),
        Some(W::Uuid(true)) => well_known = Some(WellKnown::Uuid),
        // PGV's checker replaces the pattern with the well-known regex.
        Some(W::WellKnownRegex(k)) if k != 0 => {
            let strict = r.strict();
            let header = match (k, strict) {
                (1 | 2, false) => Some((
                    HeaderPattern::String,
                    "value must not contain NUL, CR or LF characters",
                )),
                (1, true) => Some((
                    HeaderPattern::Name,
                    "value must be a valid HTTP header name",
                )),
                (2, true) => Some((
                    HeaderPattern::Value,
                    "value must be a valid HTTP header value",
                )),
                _ => None,
            };
            if let Some((header, message)) = header {
                pattern = Some(Pattern {
                    regex: PatternRegex::Header(header),
                    message: message.to_owned(),
                });
            }
        }
        _ => {}
    }
    StrRules {
        konst: r.r#const.clone(),
        len: r.len,
        min_len: r.min_len,
        max_len: r.max_len,
        len_bytes: r.len_bytes,
        min_bytes: r.min_bytes,
        max_bytes: r.max_bytes,
        pattern,
        prefix: r.prefix.clone(),
        suffix: r.suffix.clone(),
        contains: r.contains.clone(),
        not_contains: r.not_contains.clone(),
        in_: r.r#in.clone(),
        not_in: r.not_in.clone(),
        well_known,
        ignore_empty: r.ignore_empty(),
    }
}

fn compile_bytes(r: &pgv::BytesRules) -> BytesRules {
    use pgv::bytes_rules::WellKnown as W;
    BytesRules {
        konst: r.r#const.clone(),
        len: r.len,
        min_len: r.min_len,
        max_len: r.max_len,
        pattern: r.pattern.as_deref().map(|p| {
            (
                compile_re2(p).and_then(|p| regex::bytes::Regex::new(&p).ok()),
                format!("value does not match regex pattern {}", quote(p)),
            )
        }),
        prefix: r.prefix.clone(),
        suffix: r.suffix.clone(),
        contains: r.contains.clone(),
        in_: r.r#in.clone(),
        not_in: r.not_in.clone(),
        well_known: match r.well_known {
            Some(W::Ip(true)) => Some(WellKnown::Ip),
            Some(W::Ipv4(true)) => Some(WellKnown::Ipv4),
            Some(W::Ipv6(true)) => Some(WellKnown::Ipv6),
            _ => None,
        },
        ignore_empty: r.ignore_empty(),
    }
}

/// An RE2 pattern as a `regex` crate pattern with RE2's `FullMatch` anchoring:
/// RE2's Perl classes are ASCII-only, the crate's are Unicode, so they are
/// spelled out. `None` for what the crate cannot express (`\C`, `\Q..\E`).
fn compile_re2(pattern: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len() + 16);
    out.push_str("^(?:");
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next()?;
                let (outside, inside) = match next {
                    'd' => ("[0-9]", "0-9"),
                    'D' => ("[^0-9]", "[^0-9]"),
                    'w' => ("[0-9A-Za-z_]", "0-9A-Za-z_"),
                    'W' => ("[^0-9A-Za-z_]", "[^0-9A-Za-z_]"),
                    's' => (r"[\t\n\f\r ]", r"\t\n\f\r "),
                    'S' => (r"[^\t\n\f\r ]", r"[^\t\n\f\r ]"),
                    'b' if !in_class => (r"(?-u:\b)", ""),
                    'B' if !in_class => (r"(?-u:\B)", ""),
                    'C' | 'Q' | 'E' => return None,
                    other => {
                        out.push('\\');
                        out.push(other);
                        class_start = false;
                        continue;
                    }
                };
                out.push_str(if in_class { inside } else { outside });
                class_start = false;
            }
            '[' if !in_class => {
                out.push('[');
                in_class = true;
                class_start = true;
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class such as [:alpha:]: copy it whole.
                out.push('[');
                for c in chars.by_ref() {
                    out.push(c);
                    if c == ']' {
                        break;
                    }
                }
                class_start = false;
            }
            '[' => {
                // A literal '[' inside a class (RE2 has no nested classes).
                out.push_str(r"\[");
                class_start = false;
            }
            ']' if in_class && !class_start => {
                out.push(']');
                in_class = false;
            }
            ']' if in_class => {
                out.push_str(r"\]");
                class_start = false;
            }
            '&' | '~' | '-' if in_class && chars.peek() == Some(&c) => {
                // `&&`, `~~` and `--` are set operations for the crate, literals for RE2.
                out.push('\\');
                out.push(c);
                class_start = false;
            }
            other => {
                out.push(other);
                class_start = false;
            }
        }
    }
    out.push_str(")$");
    Some(out)
}

// ---------------------------------------------------------------------------
// The walk.

struct Walker {
    table: Arc<TypeTable<MessagePlan>>,
    path: FieldPath,
    durations: Vec<ConfigError>,
    errors: Vec<ConfigError>,
    depth: usize,
}

impl Walker {
    fn error(&mut self, message: String) {
        self.errors.push(ConfigError::new(
            ErrorKind::Constraint,
            self.path.clone(),
            message,
        ));
    }

    /// Walks one message; `pgv` says whether PGV's rules apply here (they do
    /// not under `skip`, `disabled`, or an `any`/`duration` rule).
    fn message(&mut self, msg: &DynamicMessage, pgv: bool) {
        if self.depth >= MAX_DEPTH {
            return;
        }
        let desc = msg.descriptor();
        let Some(plan) = self.table.walkable(&desc) else {
            return;
        };
        self.depth += 1;
        match plan.special {
            Special::Duration => self.duration(msg),
            // Envoy validates a typed config fully when it instantiates it.
            Special::Any => {
                if let Some(inner) = unpack_any(msg) {
                    self.message(&inner, true);
                }
            }
            Special::TypedStruct => {
                if let Some(inner) = unpack_typed_struct(msg) {
                    self.path.push(Seg::Field("value".into()));
                    self.message(&inner, true);
                    self.path.pop();
                }
            }
            Special::None => {
                let pgv = pgv && !plan.disabled;
                for item in &plan.items {
                    match item {
                        Item::Field(f) => self.field(msg, f, pgv),
                        Item::OneofRequired { name, members } if pgv => {
                            if !members.iter().any(|m| msg.has_field(m)) {
                                let names: Vec<String> =
                                    members.iter().map(|m| format!("'{}'", m.name())).collect();
                                self.error(format!(
                                    "exactly one of {} must be set (oneof '{name}' is required)",
                                    names.join(", ")
                                ));
                            }
                        }
                        Item::OneofRequired { .. } => {}
                    }
                }
            }
        }
        self.depth -= 1;
    }

    /// Envoy's `validateDurationFields` on one set `Duration`.
    fn duration(&mut self, msg: &DynamicMessage) {
        let seconds = msg
            .get_field_by_number(1)
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        let nanos = msg
            .get_field_by_number(2)
            .and_then(|v| v.as_i32())
            .unwrap_or(0);
        let message = if seconds < 0 || nanos < 0 {
            "invalid duration: must be non-negative (Envoy: \"Invalid duration: Expected positive duration\")"
        } else if seconds > DURATION_MAX_SECONDS || nanos > 999_999_999 {
            "invalid duration: out of range (at most 315576000000 seconds, and nanos below 1000000000)"
        } else {
            return;
        };
        self.durations.push(ConfigError::new(
            ErrorKind::Constraint,
            self.path.clone(),
            message,
        ));
    }

    fn field(&mut self, msg: &DynamicMessage, f: &FieldPlan, pgv: bool) {
        let check = pgv && f.checks;
        let walks = *f.child_walks.get_or_init(|| {
            let child = match &f.shape {
                Shape::Single { child, .. }
                | Shape::List { child, .. }
                | Shape::Map { child, .. } => child,
            };
            child.as_ref().is_some_and(|c| self.table.visit(c))
        });
        if !check && !walks {
            return;
        }
        let has = msg.has_field(&f.fd);
        if f.gated && !has {
            return;
        }
        let recurse = has && walks;
        if !check && !recurse {
            return;
        }
        match &f.shape {
            Shape::Single { rules, .. } => {
                self.path.push(Seg::Field(f.name.clone()));
                let value = msg.get_field(&f.fd);
                if check && let Some(e) = check_value(rules, &value, has) {
                    self.error(e);
                }
                if recurse && let Value::Message(m) = &*value {
                    self.message(m, pgv && rules.recurses());
                }
                self.path.pop();
            }
            Shape::List { rules, items, .. } => {
                self.path.push(Seg::Field(f.name.clone()));
                let value = msg.get_field(&f.fd);
                let list: &[Value] = match &*value {
                    Value::List(l) => l,
                    _ => &[],
                };
                self.list(list, rules.as_ref(), items, check, recurse, pgv);
                self.path.pop();
            }
            Shape::Map {
                rules,
                keys,
                values,
                ..
            } => {
                self.path.push(Seg::Field(f.name.clone()));
                let value = msg.get_field(&f.fd);
                if let Value::Map(map) = &*value {
                    self.map(map, rules.as_ref(), keys, values, check, recurse, pgv);
                }
                self.path.pop();
            }
        }
    }

    fn list(
        &mut self,
        list: &[Value],
        rules: Option<&RepRules>,
        items: &Rules,
        check: bool,
        recurse: bool,
        pgv: bool,
    ) {
        let mut check_items = check && items.checks();
        let mut unique = false;
        if let Some(r) = rules.filter(|_| check) {
            if r.ignore_empty && list.is_empty() {
                check_items = false;
            } else {
                if let Some(e) = count_check(
                    list.len() as u64,
                    r.min_items,
                    r.max_items,
                    "item(s)",
                    "items",
                ) {
                    self.error(e);
                }
                unique = r.unique;
            }
        }
        let mut seen: HashSet<UniqueKey<'_>> = HashSet::new();
        for (i, item) in list.iter().enumerate() {
            self.path.push(Seg::Index(i));
            if unique
                && let Some(key) = UniqueKey::of(item)
                && !seen.insert(key)
            {
                self.error("repeated value must contain unique items".to_owned());
            }
            if check_items && let Some(e) = check_value(items, item, true) {
                self.error(e);
            }
            if recurse && let Value::Message(m) = item {
                self.message(m, pgv && items.recurses());
            }
            self.path.pop();
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn map(
        &mut self,
        map: &HashMap<MapKey, Value>,
        rules: Option<&MapRules>,
        keys: &Rules,
        values: &Rules,
        check: bool,
        recurse: bool,
        pgv: bool,
    ) {
        let mut check_entries = check;
        if let Some(r) = rules.filter(|_| check) {
            if r.ignore_empty && map.is_empty() {
                check_entries = false;
            } else if let Some(e) = count_check(
                map.len() as u64,
                r.min_pairs,
                r.max_pairs,
                "pair(s)",
                "pairs",
            ) {
                self.error(e);
            }
        }
        let check_keys = check_entries && keys.checks();
        let check_values = check_entries && values.checks();
        if !check_keys && !check_values && !recurse {
            return;
        }
        let mut entries: Vec<(&MapKey, &Value)> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in entries {
            self.path.push(Seg::Key(key_text(key).into()));
            if check_keys && let Some(e) = check_value(keys, &Value::from(key.clone()), true) {
                self.error(format!("invalid key: {e}"));
            }
            if check_values && let Some(e) = check_value(values, value, true) {
                self.error(e);
            }
            if recurse && let Value::Message(m) = value {
                self.message(m, pgv && values.recurses());
            }
            self.path.pop();
        }
    }
}

fn key_text(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(i) => i.to_string(),
        MapKey::I64(i) => i.to_string(),
        MapKey::U32(i) => i.to_string(),
        MapKey::U64(i) => i.to_string(),
    }
}

/// PGV's `min_items`/`max_items` (and `min_pairs`/`max_pairs`) template.
fn count_check(
    n: u64,
    min: Option<u64>,
    max: Option<u64>,
    unit: &str,
    units: &str,
) -> Option<String> {
    let min_v = min.unwrap_or(0);
    let max_v = max.unwrap_or(0);
    if min_v > 0 {
        if min_v == max_v {
            (n != min_v).then(|| format!("value must contain exactly {min_v} {unit}"))
        } else if max.is_some() {
            (n < min_v || n > max_v).then(|| {
                format!("value must contain between {min_v} and {max_v} {units}, inclusive")
            })
        } else {
            (n < min_v).then(|| format!("value must contain at least {min_v} {unit}"))
        }
    } else if max.is_some() {
        (n > max_v).then(|| format!("value must contain no more than {max_v} {unit}"))
    } else {
        None
    }
}

/// A hashable list element for `unique` (scalars and enums only, like PGV).
#[derive(PartialEq, Eq, Hash)]
enum UniqueKey<'a> {
    Bool(bool),
    I(i64),
    U(u64),
    F(u64),
    S(&'a str),
    B(&'a [u8]),
}

impl<'a> UniqueKey<'a> {
    fn of(v: &'a Value) -> Option<Self> {
        Some(match v {
            Value::Bool(b) => UniqueKey::Bool(*b),
            Value::I32(i) | Value::EnumNumber(i) => UniqueKey::I(i64::from(*i)),
            Value::I64(i) => UniqueKey::I(*i),
            Value::U32(i) => UniqueKey::U(u64::from(*i)),
            Value::U64(i) => UniqueKey::U(*i),
            Value::F32(f) => UniqueKey::of_float(f64::from(*f))?,
            Value::F64(f) => UniqueKey::of_float(*f)?,
            Value::String(s) => UniqueKey::S(s),
            Value::Bytes(b) => UniqueKey::B(b),
            Value::Message(_) | Value::List(_) | Value::Map(_) => return None,
        })
    }

    /// NaN never equals anything; -0 equals 0.
    fn of_float(f: f64) -> Option<Self> {
        if f.is_nan() {
            None
        } else if f == 0.0 {
            Some(UniqueKey::F(0))
        } else {
            Some(UniqueKey::F(f.to_bits()))
        }
    }
}

// ---------------------------------------------------------------------------
// The checks of one value, in the order of PGV's C++ templates; the first
// failure is reported, as PGV does.

/// Checks `value` against `rules`; `has` says whether a message value is set.
fn check_value(rules: &Rules, value: &Value, has: bool) -> Option<String> {
    match rules {
        Rules::None => None,
        Rules::Message { required, .. } => {
            (*required && !has).then(|| "value is required".to_owned())
        }
        Rules::Wrapper { required, inner } => {
            if has {
                let Value::Message(m) = value else {
                    return None;
                };
                let wrapped = m.get_field_by_number(1)?;
                check_value(inner, &wrapped, true)
            } else {
                required.then(|| "value is required and must not be nil.".to_owned())
            }
        }
        Rules::Num(r) => check_num(r, value),
        Rules::Bool(konst) => {
            let (Some(k), Some(v)) = (konst, value.as_bool()) else {
                return None;
            };
            (v != *k).then(|| format!("value must equal {k}"))
        }
        Rules::Str(r) => check_str(r, value.as_str()?),
        Rules::Bytes(r) => check_bytes(r, value.as_bytes()?),
        Rules::Enum(r) => check_enum(r, value.as_enum_number()?),
        Rules::Any(r) => {
            if !has {
                return r.required.then(|| "value is required".to_owned());
            }
            let Value::Message(m) = value else {
                return None;
            };
            if m.descriptor().full_name() != ANY {
                return None;
            }
            let url = m.get_field_by_number(1);
            let url = url.as_deref().and_then(Value::as_str).unwrap_or("");
            if !r.in_.is_empty() {
                (!r.in_.iter().any(|u| u == url))
                    .then(|| format!("type URL must be in list {}", list(&r.in_)))
            } else if !r.not_in.is_empty() {
                r.not_in
                    .iter()
                    .any(|u| u == url)
                    .then(|| format!("type URL must not be in list {}", list(&r.not_in)))
            } else {
                None
            }
        }
        Rules::Duration(r) => {
            if !has {
                return r.required.then(|| "value is required".to_owned());
            }
            let Value::Message(m) = value else {
                return None;
            };
            check_duration(r, dur_of(m))
        }
        Rules::Timestamp(r) => {
            if !has {
                return r.required.then(|| "value is required".to_owned());
            }
            let Value::Message(m) = value else {
                return None;
            };
            if m.descriptor().full_name() != TIMESTAMP {
                return None;
            }
            check_timestamp(r, dur_of(m))
        }
    }
}

/// The raw (seconds, nanos) of a `Duration` or `Timestamp`.
fn dur_of(m: &DynamicMessage) -> Dur {
    Dur {
        seconds: m
            .get_field_by_number(1)
            .and_then(|v| v.as_i64())
            .unwrap_or(0),
        nanos: m
            .get_field_by_number(2)
            .and_then(|v| v.as_i32())
            .unwrap_or(0),
    }
}

fn check_num(r: &NumRules, value: &Value) -> Option<String> {
    match r {
        NumRules::I(r) => {
            let v = match value {
                Value::I32(i) | Value::EnumNumber(i) => i64::from(*i),
                Value::I64(i) => *i,
                Value::U32(i) => i64::from(*i),
                Value::U64(i) => i64::try_from(*i).unwrap_or(i64::MAX),
                _ => return None,
            };
            check_num_t(r, v, 0)
        }
        NumRules::U(r) => {
            let v = match value {
                Value::U32(i) => u64::from(*i),
                Value::U64(i) => *i,
                Value::I32(i) => u64::try_from(*i).unwrap_or(0),
                Value::I64(i) => u64::try_from(*i).unwrap_or(0),
                _ => return None,
            };
            check_num_t(r, v, 0)
        }
        NumRules::F(r) => {
            let v = match value {
                Value::F32(f) => f64::from(*f),
                Value::F64(f) => *f,
                _ => return None,
            };
            check_num_t(r, v, 0.0)
        }
    }
}

fn check_num_t<T: Copy + PartialOrd + Display>(r: &Num<T>, v: T, zero: T) -> Option<String> {
    if r.ignore_empty && v == zero {
        return None;
    }
    if let Some(k) = r.konst
        && v != k
    {
        return Some(format!("value must equal {k}"));
    }
    if let Some(e) = ltgt(v, r.lt, r.lte, r.gt, r.gte) {
        return Some(e);
    }
    in_check(&v, &r.in_, &r.not_in, |x, y| x == y, list)
}

/// PGV's `in`/`not_in` template (`in` wins when both are given).
fn in_check<V: ?Sized, T, F, L>(v: &V, in_: &[T], not_in: &[T], eq: F, show: L) -> Option<String>
where
    F: Fn(&V, &T) -> bool,
    L: Fn(&[T]) -> String,
{
    if !in_.is_empty() {
        (!in_.iter().any(|x| eq(v, x))).then(|| format!("value must be in list {}", show(in_)))
    } else if !not_in.is_empty() {
        not_in
            .iter()
            .any(|x| eq(v, x))
            .then(|| format!("value must not be in list {}", show(not_in)))
    } else {
        None
    }
}

/// Go's rendering of a slice: `[a b c]`.
fn list<T: Display>(items: &[T]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{item}");
    }
    out.push(']');
    out
}

/// PGV's `ltgt` template, with its exact comparisons (a range whose bounds are
/// reversed means "outside").
fn ltgt<T: Copy + PartialOrd + Display>(
    v: T,
    lt: Option<T>,
    lte: Option<T>,
    gt: Option<T>,
    gte: Option<T>,
) -> Option<String> {
    if let Some(lt) = lt {
        if let Some(gt) = gt {
            if lt > gt {
                (v <= gt || v >= lt).then(|| format!("value must be inside range ({gt}, {lt})"))
            } else {
                (v >= lt && v <= gt).then(|| format!("value must be outside range [{lt}, {gt}]"))
            }
        } else if let Some(gte) = gte {
            if lt > gte {
                (v < gte || v >= lt).then(|| format!("value must be inside range [{gte}, {lt})"))
            } else {
                (v >= lt && v < gte).then(|| format!("value must be outside range [{lt}, {gte})"))
            }
        } else {
            (v >= lt).then(|| format!("value must be less than {lt}"))
        }
    } else if let Some(lte) = lte {
        if let Some(gt) = gt {
            if lte > gt {
                (v <= gt || v > lte).then(|| format!("value must be inside range ({gt}, {lte}]"))
            } else {
                (v > lte && v <= gt).then(|| format!("value must be outside range ({lte}, {gt}]"))
            }
        } else if let Some(gte) = gte {
            if lte > gte {
                (v < gte || v > lte).then(|| format!("value must be inside range [{gte}, {lte}]"))
            } else {
                (v > lte && v < gte).then(|| format!("value must be outside range ({lte}, {gte})"))
            }
        } else {
            (v > lte).then(|| format!("value must be less than or equal to {lte}"))
        }
    } else if let Some(gt) = gt {
        (v <= gt).then(|| format!("value must be greater than {gt}"))
    } else if let Some(gte) = gte {
        (v < gte).then(|| format!("value must be greater than or equal to {gte}"))
    } else {
        None
    }
}

/// A string as Go's `%q` renders it (PGV quotes literals that way).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_bytes(b: &[u8]) -> String {
    quote(&String::from_utf8_lossy(b))
}

fn check_str(r: &StrRules, v: &str) -> Option<String> {
    if r.ignore_empty && v.is_empty() {
        return None;
    }
    if let Some(k) = &r.konst
        && v != k
    {
        return Some(format!("value must equal {}", quote(k)));
    }
    if let Some(e) = in_check(v, &r.in_, &r.not_in, |a: &str, b: &String| a == b, list) {
        return Some(e);
    }
    // Lengths in characters (Unicode code points).
    if r.len.is_some() || (r.min_len.is_some() && r.max_len.is_some() && r.min_len == r.max_len) {
        let n = r.len.or(r.min_len).unwrap_or(0);
        if v.chars().count() as u64 != n {
            return Some(format!("value must be {n} characters"));
        }
    } else if let Some(min) = r.min_len {
        let n = v.chars().count() as u64;
        if let Some(max) = r.max_len {
            if n < min || n > max {
                return Some(format!(
                    "value must have between {min} and {max} characters inclusive"
                ));
            }
        } else if n < min {
            return Some(format!("value length must be at least {min} characters"));
        }
    } else if let Some(max) = r.max_len
        && v.chars().count() as u64 > max
    {
        return Some(format!("value length must be at most {max} characters"));
    }
    if let Some(e) = byte_len_check(v.len() as u64, r.len_bytes, r.min_bytes, r.max_bytes) {
        return Some(e);
    }
    if let Some(p) = &r.prefix
        && !v.starts_with(p.as_str())
    {
        return Some(format!("value does not have prefix {}", quote(p)));
    }
    if let Some(s) = &r.suffix
        && !v.ends_with(s.as_str())
    {
        return Some(format!("value does not have suffix {}", quote(s)));
    }
    if let Some(c) = &r.contains
        && !v.contains(c.as_str())
    {
        return Some(format!("value does not contain substring {}", quote(c)));
    }
    if let Some(c) = &r.not_contains
        && v.contains(c.as_str())
    {
        return Some(format!("value contains substring {}", quote(c)));
    }
    if let Some(p) = &r.pattern
        && p.is_match(v) == Some(false)
    {
        return Some(p.message.clone());
    }
    let wk = r.well_known?;
    let (ok, message) = match wk {
        WellKnown::Ip => (
            v.parse::<IpAddr>().is_ok(),
            "value must be a valid IP Address",
        ),
        WellKnown::Ipv4 => (
            v.parse::<Ipv4Addr>().is_ok(),
            "value must be a valid IPv4 Address",
        ),
        WellKnown::Ipv6 => (
            v.parse::<Ipv6Addr>().is_ok(),
            "value must be a valid IPv6 Address",
        ),
        WellKnown::Email => (is_email(v), "value must be a valid email address"),
        WellKnown::Address => (
            is_hostname(v) || v.parse::<IpAddr>().is_ok(),
            "value must be an ip address, or a hostname.",
        ),
        WellKnown::Hostname => (is_hostname(v), "value must be a valid hostname"),
        WellKnown::Uri => (is_uri(v, false), "value must be a valid, absolute URI"),
        WellKnown::UriRef => (is_uri(v, true), "value must be a valid URI"),
        WellKnown::Uuid => (
            UUID.as_ref().is_none_or(|re| re.is_match(v)),
            "value must be a valid UUID",
        ),
    };
    (!ok).then(|| message.to_owned())
}

/// The `len_bytes`/`min_bytes`/`max_bytes` template of string rules.
fn byte_len_check(n: u64, len: Option<u64>, min: Option<u64>, max: Option<u64>) -> Option<String> {
    if len.is_some() || (min.is_some() && max.is_some() && min == max) {
        let want = len.or(min).unwrap_or(0);
        (n != want).then(|| format!("value length must be {want} bytes"))
    } else if let Some(min) = min {
        match max {
            Some(max) => (n < min || n > max)
                .then(|| format!("value length must be between {min} and {max} bytes, inclusive")),
            None => (n < min).then(|| format!("value length must be at least {min} bytes")),
        }
    } else if let Some(max) = max {
        (n > max).then(|| format!("value length must be at most {max} bytes"))
    } else {
        None
    }
}

fn check_bytes(r: &BytesRules, v: &[u8]) -> Option<String> {
    if r.ignore_empty && v.is_empty() {
        return None;
    }
    if let Some(k) = &r.konst
        && v != k.as_slice()
    {
        return Some(format!("value must equal {}", quote_bytes(k)));
    }
    let show = |l: &[Vec<u8>]| list(&l.iter().map(|b| quote_bytes(b)).collect::<Vec<_>>());
    if let Some(e) = in_check(
        v,
        &r.in_,
        &r.not_in,
        |a: &[u8], b: &Vec<u8>| a == b.as_slice(),
        show,
    ) {
        return Some(e);
    }
    if let Some(e) = byte_len_check(v.len() as u64, r.len, r.min_len, r.max_len) {
        return Some(e);
    }
    if let Some(p) = &r.prefix
        && !v.starts_with(p)
    {
        return Some(format!("value does not have prefix {}", quote_bytes(p)));
    }
    if let Some(s) = &r.suffix
        && !v.ends_with(s)
    {
        return Some(format!("value does not have suffix {}", quote_bytes(s)));
    }
    if let Some(c) = &r.contains
        && !c.is_empty()
        && !v.windows(c.len()).any(|w| w == c.as_slice())
    {
        return Some(format!(
            "value does not contain substring {}",
            quote_bytes(c)
        ));
    }
    if let Some((Some(re), message)) = &r.pattern
        && !re.is_match(v)
    {
        return Some(message.clone());
    }
    // Go's net.IP semantics (PGV's C++ has none for bytes).
    let v4_mapped =
        v.len() == 16 && v[..10].iter().all(|b| *b == 0) && v[10] == 0xff && v[11] == 0xff;
    match r.well_known? {
        WellKnown::Ip => {
            (v.len() != 4 && v.len() != 16).then(|| "value must be a valid IP address".to_owned())
        }
        WellKnown::Ipv4 => {
            (v.len() != 4 && !v4_mapped).then(|| "value must be a valid IPv4 address".to_owned())
        }
        WellKnown::Ipv6 => {
            (v.len() != 16 || v4_mapped).then(|| "value must be a valid IPv6 address".to_owned())
        }
        _ => None,
    }
}

fn check_enum(r: &EnumRules, v: i32) -> Option<String> {
    let name = |n: &i32| match r.desc.as_ref().and_then(|d| d.get_value(*n)) {
        Some(value) => value.name().to_owned(),
        None => n.to_string(),
    };
    if let Some(k) = r.konst
        && v != k
    {
        return Some(format!("value must equal {}", name(&k)));
    }
    let show = |l: &[i32]| list(&l.iter().map(name).collect::<Vec<_>>());
    if let Some(e) = in_check(&v, &r.in_, &r.not_in, |a, b| a == b, show) {
        return Some(e);
    }
    if r.defined_only && r.desc.as_ref().is_some_and(|d| d.get_value(v).is_none()) {
        return Some("value must be one of the defined enum values".to_owned());
    }
    None
}

fn check_duration(r: &DurRules, d: Dur) -> Option<String> {
    if r.konst.is_none()
        && r.lt.is_none()
        && r.lte.is_none()
        && r.gt.is_none()
        && r.gte.is_none()
        && r.in_.is_empty()
        && r.not_in.is_empty()
    {
        return None;
    }
    if !(-999_999_999..=999_999_999).contains(&d.nanos)
        || !(-DURATION_MAX_SECONDS..=DURATION_MAX_SECONDS).contains(&d.seconds)
    {
        return Some("value is not a valid duration".to_owned());
    }
    if let Some(k) = r.konst
        && d != k
    {
        return Some(format!("value must equal {k}"));
    }
    if let Some(e) = ltgt(d, r.lt, r.lte, r.gt, r.gte) {
        return Some(e);
    }
    in_check(&d, &r.in_, &r.not_in, |a, b| a == b, list)
}

/// Timestamp rules, with the semantics of PGV's Go generator (its C++ one
/// leaves comparisons unimplemented; no Envoy proto uses them).
fn check_timestamp(r: &TsRules, t: Dur) -> Option<String> {
    let any = r.konst.is_some()
        || r.lt.is_some()
        || r.lte.is_some()
        || r.gt.is_some()
        || r.gte.is_some()
        || r.lt_now
        || r.gt_now
        || r.within.is_some();
    if !any {
        return None;
    }
    // RFC 3339 range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
    if !(-62_135_596_800..=253_402_300_799).contains(&t.seconds)
        || !(0..1_000_000_000).contains(&t.nanos)
    {
        return Some("value is not a valid timestamp".to_owned());
    }
    let ts = |d: Dur| TsShow(d);
    if let Some(k) = r.konst
        && t != k
    {
        return Some(format!("value must equal {}", ts(k)));
    }
    if r.lt.is_some() || r.lte.is_some() || r.gt.is_some() || r.gte.is_some() {
        return ltgt(
            ts(t),
            r.lt.map(ts),
            r.lte.map(ts),
            r.gt.map(ts),
            r.gte.map(ts),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let t = t.total_nanos();
    let within = r.within.map(Dur::total_nanos);
    if r.lt_now {
        match within {
            Some(w) if t >= now || t < now - w => Some(format!(
                "value must be less than now within {}",
                go_duration(w)
            )),
            None if t >= now => Some("value must be less than now".to_owned()),
            _ => None,
        }
    } else if r.gt_now {
        match within {
            Some(w) if t <= now || t > now + w => Some(format!(
                "value must be greater than now within {}",
                go_duration(w)
            )),
            None if t <= now => Some("value must be greater than now".to_owned()),
            _ => None,
        }
    } else if let Some(w) = within {
        (t >= now + w || t <= now - w)
            .then(|| format!("value must be within {} of now", go_duration(w)))
    } else {
        None
    }
}

/// A timestamp, compared as protobuf does and shown in RFC 3339.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
struct TsShow(Dur);

impl Display for TsShow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match chrono::DateTime::from_timestamp(self.0.seconds, self.0.nanos.max(0) as u32) {
            Some(t) => write!(
                f,
                "{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
            None => write!(f, "{}s", self.0.seconds),
        }
    }
}

/// Go's `time.Duration.String()` for a number of nanoseconds.
fn go_duration(nanos: i128) -> String {
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let body = if u == 0 {
        "0s".to_owned()
    } else if u < 1_000_000_000 {
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        format!("{}{unit}", frac(u, prec))
    } else {
        let secs = u / 1_000_000_000;
        let mut out = String::new();
        let hours = secs / 3600;
        let mins = secs / 60;
        if hours > 0 {
            let _ = write!(out, "{hours}h");
        }
        if mins > 0 {
            let _ = write!(out, "{}m", mins % 60);
        }
        let _ = write!(out, "{}s", frac(u % 60_000_000_000, 9));
        out
    };
    if neg { format!("-{body}") } else { body }
}

/// `v / 10^prec` with its fraction, trailing zeros dropped (Go's `fmtFrac`).
fn frac(v: u128, prec: u32) -> String {
    let scale = 10u128.pow(prec);
    let whole = v / scale;
    let part = v % scale;
    if part == 0 {
        return whole.to_string();
    }
    let digits = format!("{part:0width$}", width = prec as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// PGV's C++ `IsHostname`: the name split on dots (a trailing dot allowed),
/// each part 1-63 of `[A-Za-z0-9-]` not starting or ending with '-', at most
/// 253 bytes in all.
fn is_hostname(s: &str) -> bool {
    if s.len() > 253 {
        return false;
    }
    let mut parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    parts.iter().all(|p| {
        !p.is_empty()
            && p.len() <= 63
            && !p.starts_with('-')
            && !p.ends_with('-')
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// An RFC 5322 address (`local@domain` or `Name <local@domain>`), as PGV's Go
/// generator checks it: at most 254 bytes, a local part of at most 64, and a
/// hostname for the domain.
fn is_email(s: &str) -> bool {
    if s.len() > 254 {
        return false;
    }
    let addr = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(i), Some(body)) => &body[i + 1..],
        _ => s.trim(),
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let local_ok = if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        !local[1..local.len() - 1]
            .chars()
            .any(|c| c == '"' || c.is_control())
    } else {
        !local.is_empty()
            && local
                .split('.')
                .all(|part| !part.is_empty() && part.chars().all(atext))
    };
    local_ok && local.len() <= 64 && is_hostname(domain)
}

/// An RFC 3986 URI (absolute unless `relative_ok`): allowed characters only,
/// valid percent-escapes, and a scheme when it must be absolute.
fn is_uri(s: &str, relative_ok: bool) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b);
        if !allowed {
            return false;
        }
        i += 1;
    }
    let scheme = s
        .split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|scheme| {
            let mut c = scheme.chars();
            c.next().is_some_and(|c| c.is_ascii_alphabetic())
                && c.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !scheme.contains('/')
        });
    if scheme.is_some() {
        return true;
    }
    // A relative reference may not have a ':' in its first path segment.
    relative_ok
        && !s
            .split(['/', '?', '#'])
            .next()
            .is_some_and(|seg| seg.contains(':'))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::yaml::parse_yaml;

    /// A typical Envoy bootstrap (Envoy 1.40 accepts it: `--mode validate`).
    pub(crate) const TYPICAL_BOOTSTRAP: &str = r#"
node: {id: node-1, cluster: edge}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          common_http_protocol_options: {idle_timeout: 300s}
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
          route_config:
            name: local_route
            virtual_hosts:
            - name: backend
              domains: ["*"]
              request_headers_to_add:
              - header: {key: x-request-source, value: edge}
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              routes:
              - match: {prefix: "/api"}
                route:
                  cluster: service
                  timeout: 15s
                  retry_policy: {retry_on: 5xx, num_retries: 3, per_try_timeout: 2s}
              - match: {path: "/health"}
                direct_response: {status: 200, body: {inline_string: ok}}
              - match: {prefix: "/"}
                route: {cluster: service, prefix_rewrite: "/"}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: service
    type: STATIC
    connect_timeout: 0.25s
    lb_policy: ROUND_ROBIN
    circuit_breakers:
      thresholds: [{priority: DEFAULT, max_connections: 1000, max_requests: 1000}]
    health_checks:
    - timeout: 1s
      interval: 5s
      unhealthy_threshold: 3
      healthy_threshold: 2
      http_health_check: {path: /health}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {initial_stream_window_size: 65536}
    load_assignment:
      cluster_name: service
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
        - endpoint: {address: {socket_address: {address: 127.0.0.2, port_value: 8080}}}
layered_runtime:
  layers:
  - name: static
    static_layer: {overload.global_downstream_max_connections: 50000}
"#;

    /// Reads `yaml` as a message of `type_name` from `pool`; reading must succeed.
    pub(crate) fn read(pool: &DescriptorPool, type_name: &str, yaml: &str) -> DynamicMessage {
        let desc = pool.get_message_by_name(type_name).expect(type_name);
        let node = parse_yaml(yaml).expect("yaml");
        let parsed = parse_message(pool, &node, &desc, None, FieldPath::root());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert!(
            parsed.unknown_fields.is_empty(),
            "{:?}",
            parsed.unknown_fields
        );
        parsed.message
    }

    pub(crate) fn bootstrap(yaml: &str) -> DynamicMessage {
        read(envoy_pool(), "envoy.config.bootstrap.v3.Bootstrap", yaml)
    }

    /// Whether `pool` carries the `validate.rules` extension options.
    fn has_rules(pool: &DescriptorPool) -> bool {
        let ext = pool.get_extension_by_name("validate.rules");
        pool.get_message_by_name("envoy.config.cluster.v3.Cluster")
            .is_some_and(|c| {
                let custom = rvoy_api::CustomOptions::of(&c);
                c.get_field_by_name("connect_timeout")
                    .is_some_and(|f| field_rules(&f, &custom, ext.as_ref()).is_some())
            })
    }

    /// The protos the tests use, compiled with their extension options.
    const TEST_FILES: &[&str] = &[
        "envoy/config/bootstrap/v3/bootstrap.proto",
        "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
        "envoy/extensions/filters/http/router/v3/router.proto",
        "envoy/extensions/filters/http/compressor/v3/compressor.proto",
        "envoy/extensions/filters/http/file_server/v3/file_server.proto",
        "envoy/extensions/compression/gzip/compressor/v3/gzip.proto",
        "envoy/extensions/access_loggers/stream/v3/stream.proto",
        "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
        "envoy/config/trace/v3/zipkin.proto",
        "envoy/config/trace/v3/dynamic_ot.proto",
        "envoy/config/rbac/v3/rbac.proto",
        "udpa/type/v1/typed_struct.proto",
        "xds/type/v3/typed_struct.proto",
    ];

    /// Envoy's descriptor pool with the extension options kept: `rvoy_api`'s when
    /// it has them, else the test protos compiled here (`rvoy_api`'s build
    /// currently drops extension options, see `rvoy_api_pool_keeps_rules`).
    pub(crate) fn envoy_pool() -> &'static DescriptorPool {
        static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
            let api = &rvoy_api::descriptor_pool();
            if has_rules(api) {
                return api.clone();
            }
            let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rvoy-api/proto");
            let roots: Vec<_> = [
                "data-plane-api",
                "xds",
                "protoc-gen-validate",
                "googleapis",
                "cel-spec/proto",
                "client_model",
                "opentelemetry-proto",
                "ratelimit/api",
                "xds-schema",
            ]
            .iter()
            .map(|r| base.join(r))
            .collect();
            let mut pool = DescriptorPool::new();
            for file in TEST_FILES {
                let mut compiler = protox::Compiler::new(&roots).expect("include roots");
                compiler.include_imports(true);
                compiler.open_file(file).expect(file);
                pool.decode_file_descriptor_set(compiler.encode_file_descriptor_set().as_slice())
                    .expect(file);
            }
            pool
        });
        &POOL
    }

    #[test]
    fn header_patterns_match_what_pgv_regexes_match() {
        let cases = [
            (HeaderPattern::Name, r"^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$"),
            (HeaderPattern::Value, r"^[^\x00-\x08\x0A-\x1F\x7F]*$"),
            (HeaderPattern::String, r"^[^\x00\x0A\x0D]*$"),
        ];
        let mut inputs: Vec<String> = (0u8..=127).map(|b| char::from(b).to_string()).collect();
        inputs.extend(
            [
                "",
                ":",
                "::",
                "::a",
                ":authority",
                "x-custom",
                "a b",
                "a\tb",
                "caf\u{e9}",
                "\u{e9}",
                "a\r\n",
                "ok\n",
                "v\u{7f}",
                "x-\u{2603}",
                "a:b",
                "~`|^",
            ]
            .map(str::to_owned),
        );
        for (header, source) in cases {
            let regex = Regex::new(source).expect("PGV's regex compiles");
            for input in &inputs {
                assert_eq!(
                    header.is_match(input),
                    regex.is_match(input),
                    "{header:?} on {input:?}"
                );
            }
        }
    }

    #[test]
    fn rvoy_api_pool_keeps_rules() {
        assert!(has_rules(&rvoy_api::descriptor_pool()));
    }

    /// The errors as `path: message` lines.
    fn render(errors: &[ConfigError]) -> Vec<String> {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    fn check(pool: &DescriptorPool, type_name: &str, yaml: &str) -> Vec<String> {
        let errors = validate(&read(pool, type_name, yaml), &FieldPath::root());
        assert!(errors.iter().all(|e| e.kind == ErrorKind::Constraint));
        render(&errors)
    }

    fn envoy(type_name: &str, yaml: &str) -> Vec<String> {
        check(envoy_pool(), type_name, yaml)
    }

    fn boot(yaml: &str) -> Vec<String> {
        envoy("envoy.config.bootstrap.v3.Bootstrap", yaml)
    }

    fn typical_with(from: &str, to: &str) -> Vec<String> {
        assert!(TYPICAL_BOOTSTRAP.contains(from), "{from}");
        boot(&TYPICAL_BOOTSTRAP.replacen(from, to, 1))
    }

    const HCM_PATH: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    const ROUTES_PATH: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0]";

    #[test]
    fn typical_bootstrap_is_valid() {
        assert_eq!(boot(TYPICAL_BOOTSTRAP), Vec::<String>::new());
        // Envoy's own minimal shapes.
        assert_eq!(boot("{}"), Vec::<String>::new());
        assert_eq!(boot("admin: {}\n"), Vec::<String>::new());
    }

    // Each verdict below was checked against Envoy 1.40 (`--mode validate`).

    #[test]
    fn negative_connect_timeout_fails_twice() {
        let errors = typical_with("connect_timeout: 0.25s", "connect_timeout: -1s");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with(
            "static_resources.clusters[0].connect_timeout: invalid duration: must be non-negative"
        ));
        assert_eq!(
            errors[1],
            "static_resources.clusters[0].connect_timeout: value must be greater than 0s"
        );
        assert_eq!(
            typical_with("connect_timeout: 0.25s", "connect_timeout: 0s"),
            ["static_resources.clusters[0].connect_timeout: value must be greater than 0s"]
        );
    }

    #[test]
    fn durations_are_checked_everywhere() {
        let errors = typical_with("per_try_timeout: 2s", "per_try_timeout: -2s");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(&format!(
            "{ROUTES_PATH}.routes[0].route.retry_policy.per_try_timeout: invalid duration: must be non-negative"
        )));
        let errors = typical_with(
            "connect_timeout: 0.25s",
            "connect_timeout: {seconds: 1, nanos: 1000000000}",
        );
        assert!(
            errors[0].contains("invalid duration: out of range"),
            "{errors:?}"
        );
        let errors = typical_with(
            "connect_timeout: 0.25s",
            "connect_timeout: {seconds: 315576000001}",
        );
        assert!(
            errors[0].contains("invalid duration: out of range"),
            "{errors:?}"
        );
        let errors = typical_with("connect_timeout: 0.25s", "connect_timeout: {nanos: -1}");
        assert!(errors[0].contains("must be non-negative"), "{errors:?}");
    }

    #[test]
    fn repeated_min_items() {
        assert_eq!(
            boot("overload_manager: {}\n"),
            ["overload_manager.resource_monitors: value must contain at least 1 item(s)"]
        );
        assert_eq!(
            typical_with("domains: [\"*\"]", "domains: []"),
            [format!(
                "{ROUTES_PATH}.domains: value must contain at least 1 item(s)"
            )]
        );
    }

    #[test]
    fn string_rules_on_real_protos() {
        assert_eq!(
            typical_with("  - name: service\n", "  - name: ''\n"),
            ["static_resources.clusters[0].name: value length must be at least 1 characters"]
        );
        // The header name rule is HTTP_HEADER_NAME with `strict: false`: spaces
        // pass, CR/LF/NUL do not, and min_len 1 still applies.
        assert_eq!(
            typical_with("key: x-request-source", "key: 'x request source'"),
            Vec::<String>::new()
        );
        assert_eq!(
            typical_with("key: x-request-source", "key: \"x-req\\nsrc\""),
            [format!(
                "{ROUTES_PATH}.request_headers_to_add[0].header.key: value must not contain NUL, CR or LF characters"
            )]
        );
        assert_eq!(
            typical_with("key: x-request-source", "key: ''"),
            [format!(
                "{ROUTES_PATH}.request_headers_to_add[0].header.key: value length must be at least 1 characters"
            )]
        );
    }

    #[test]
    fn stat_prefix_inside_typed_config() {
        assert_eq!(
            typical_with("          stat_prefix: ingress_http\n", ""),
            [format!(
                "{HCM_PATH}.stat_prefix: value length must be at least 1 characters"
            )]
        );
    }

    #[test]
    fn typed_struct_contents_are_validated() {
        let hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
        let filter = |value: &str| {
            format!(
                "name: hcm\ntyped_config:\n  '@type': type.googleapis.com/{}\n  type_url: {hcm}\n  value: {value}\n",
                "xds.type.v3.TypedStruct"
            )
        };
        let ok = filter(
            "{stat_prefix: s, route_config: {name: r}, http_filters: [{name: envoy.filters.http.router}]}",
        );
        assert_eq!(
            envoy("envoy.config.listener.v3.Filter", &ok),
            Vec::<String>::new()
        );
        let bad = filter("{route_config: {virtual_hosts: [{name: v, domains: []}]}}");
        assert_eq!(
            envoy("envoy.config.listener.v3.Filter", &bad),
            [
                "typed_config.value.stat_prefix: value length must be at least 1 characters",
                "typed_config.value.route_config.virtual_hosts[0].domains: value must contain at least 1 item(s)",
            ]
        );
        let udpa = bad.replace("xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct");
        assert_eq!(envoy("envoy.config.listener.v3.Filter", &udpa).len(), 2);
        // An unknown inner type is another layer's business.
        let unknown = filter("{}").replace(hcm, "type.googleapis.com/no.such.Type");
        assert_eq!(
            envoy("envoy.config.listener.v3.Filter", &unknown),
            Vec::<String>::new()
        );
    }

    #[test]
    fn oneof_required() {
        let errors = typical_with(
            "              - match: {prefix: \"/\"}\n                route: {cluster: service, prefix_rewrite: \"/\"}\n",
            "              - match: {prefix: \"/\"}\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "{ROUTES_PATH}.routes[2]: exactly one of 'route', 'redirect', "
            )),
            "{errors:?}"
        );
        assert!(
            errors[0].ends_with("must be set (oneof 'action' is required)"),
            "{errors:?}"
        );
    }

    #[test]
    fn numeric_and_wrapper_rules() {
        assert_eq!(
            typical_with(
                "initial_stream_window_size: 65536",
                "initial_stream_window_size: 100"
            ),
            ["static_resources.clusters[0].typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config.http2_protocol_options.initial_stream_window_size: value must be inside range [65535, 2147483647]".to_string()]
        );
        assert_eq!(
            typical_with("port_value: 10000", "port_value: 70000"),
            [
                "static_resources.listeners[0].address.socket_address.port_value: value must be less than or equal to 65535"
            ]
        );
        assert_eq!(
            typical_with("status: 200,", "status: 99,"),
            [format!(
                "{ROUTES_PATH}.routes[1].direct_response.status: value must be inside range [200, 600)"
            )]
        );
        // message.required on a wrapper / message field.
        assert_eq!(
            typical_with(
                "    - timeout: 1s\n      interval: 5s",
                "    - interval: 5s"
            ),
            ["static_resources.clusters[0].health_checks[0].timeout: value is required"]
        );
        assert_eq!(
            typical_with("      healthy_threshold: 2\n", ""),
            ["static_resources.clusters[0].health_checks[0].healthy_threshold: value is required"]
        );
    }

    #[test]
    fn enum_defined_only() {
        assert_eq!(
            typical_with("lb_policy: ROUND_ROBIN", "lb_policy: 99"),
            [
                "static_resources.clusters[0].lb_policy: value must be one of the defined enum values"
            ]
        );
    }

    #[test]
    fn unique_items_and_item_rules() {
        let compressor = |codes: &str| {
            format!(
                "compressor_library: {{name: gzip, typed_config: {{'@type': type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip}}}}\nresponse_direction_config: {{common_config: {{}}, uncompressible_response_codes: {codes}}}\n"
            )
        };
        let ty = "envoy.extensions.filters.http.compressor.v3.Compressor";
        assert_eq!(envoy(ty, &compressor("[206, 304]")), Vec::<String>::new());
        assert_eq!(
            envoy(ty, &compressor("[206, 304, 206, 700]")),
            [
                "response_direction_config.uncompressible_response_codes[2]: repeated value must contain unique items",
                "response_direction_config.uncompressible_response_codes[3]: value must be inside range [200, 600)",
            ]
        );
    }

    #[test]
    fn any_required_on_a_message_field_does_not_recurse() {
        // ExtensionConfigSource.config_source carries `any.required`: PGV's C++
        // checks presence only and does not validate the ConfigSource itself.
        let ty = "envoy.config.core.v3.ExtensionConfigSource";
        assert_eq!(
            envoy(ty, "type_urls: [x]\n"),
            ["config_source: value is required"]
        );
        assert_eq!(
            envoy(
                ty,
                "type_urls: [x]\nconfig_source: {api_config_source: {api_type: 99}}\n"
            ),
            Vec::<String>::new()
        );
        // While the same ConfigSource elsewhere is validated.
        assert_eq!(
            envoy(
                "envoy.config.core.v3.ConfigSource",
                "api_config_source: {api_type: 99}\n"
            ),
            ["api_config_source.api_type: value must be one of the defined enum values"]
        );
    }

    #[test]
    fn message_skip() {
        // KeyValueAppend.entry is `message.skip`: its KeyValue is not validated.
        let ty = "envoy.config.core.v3.KeyValueAppend";
        assert_eq!(envoy(ty, "entry: {key: ''}\n"), Vec::<String>::new());
        assert_eq!(
            envoy(ty, "record: {key: ''}\n"),
            ["record.key: value length must be at least 1 characters"]
        );
    }

    #[test]
    fn map_rules() {
        let ty = "envoy.extensions.filters.http.file_server.v3.FileServerConfig";
        let errors = envoy(
            ty,
            "manager_config: {thread_pool: {}}\npath_mappings: [{request_path_prefix: /a, file_path_prefix: /b}]\ncontent_types: {ok_1: text/plain, Bad: text/html}\n",
        );
        assert_eq!(
            errors,
            [
                "content_types['Bad']: invalid key: value does not match regex pattern \"^[a-z0-9_\\\\-]*$\""
            ]
        );
    }

    #[test]
    fn not_set_messages_are_not_validated() {
        // An unset Cluster field holding rules is fine; an empty one is validated.
        assert_eq!(
            typical_with(
                "    lb_policy: ROUND_ROBIN\n",
                "    lb_policy: ROUND_ROBIN\n    upstream_connection_options: {}\n"
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            typical_with(
                "    lb_policy: ROUND_ROBIN\n",
                "    lb_policy: ROUND_ROBIN\n    outlier_detection: {max_ejection_percent: 101}\n"
            ),
            [
                "static_resources.clusters[0].outlier_detection.max_ejection_percent: value must be less than or equal to 100"
            ]
        );
    }

    #[test]
    fn ten_thousand_routes_take_milliseconds() {
        let mut yaml = String::from(
            "static_resources:\n  listeners:\n  - name: l\n    address: {socket_address: {address: 0.0.0.0, port_value: 80}}\n    filter_chains:\n    - filters:\n      - name: hcm\n        typed_config:\n          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          stat_prefix: s\n          http_filters: [{name: envoy.filters.http.router, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]\n          route_config:\n            virtual_hosts:\n            - name: v\n              domains: ['*']\n              routes:\n",
        );
        for i in 0..10_000 {
            let _ = writeln!(
                yaml,
                "              - {{match: {{prefix: /p{i}, headers: [{{name: x-h, string_match: {{exact: v}}}}]}}, route: {{cluster: c{i}, timeout: 5s, retry_policy: {{num_retries: 2, per_try_timeout: 1s}}}}, request_headers_to_add: [{{header: {{key: x-r, value: v}}}}]}}"
            );
        }
        let msg = bootstrap(&yaml);
        let _ = validate(&msg, &FieldPath::root()); // warm the caches
        let start = std::time::Instant::now();
        let errors = validate(&msg, &FieldPath::root());
        let elapsed = start.elapsed();
        assert!(errors.is_empty(), "{:?}", &errors[..errors.len().min(3)]);
        eprintln!("validated 10000 routes in {elapsed:?}");
        assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
    }

    // ----- every rule kind, on a synthetic proto compiled at test time -----

    const TEST_PROTO: &str = r#"
syntax = "proto3";
package t;
import "validate/validate.proto";
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }

message Inner { string id = 1 [(validate.rules).string.min_len = 1]; }

message Num {
  int32 gt = 1 [(validate.rules).int32.gt = 0];
  int64 range = 2 [(validate.rules).int64 = {gte: 1, lt: 10}];
  uint32 outside = 3 [(validate.rules).uint32 = {lt: 10, gt: 20}];
  uint64 in = 4 [(validate.rules).uint64 = {in: [1, 2, 3]}];
  sint32 not_in = 5 [(validate.rules).sint32 = {not_in: [5]}];
  sint64 konst = 6 [(validate.rules).sint64.const = 7];
  fixed32 lte = 7 [(validate.rules).fixed32.lte = 5];
  fixed64 ignore = 8 [(validate.rules).fixed64 = {gte: 5, ignore_empty: true}];
  sfixed32 half_open = 9 [(validate.rules).sfixed32 = {gt: -5, lte: 5}];
  sfixed64 outside_closed = 10 [(validate.rules).sfixed64 = {lte: -5, gte: 5}];
  float fl = 11 [(validate.rules).float = {gt: 0, lt: 1}];
  double db = 12 [(validate.rules).double = {gte: 0.5, ignore_empty: true}];
  bool yes = 13 [(validate.rules).bool.const = true];
  google.protobuf.UInt32Value wrapped = 14 [(validate.rules).uint32.gte = 10];
  google.protobuf.UInt32Value wrapped_req = 15 [(validate.rules) = {uint32: {gte: 10}, message: {required: true}}];
  double outside_open = 16 [(validate.rules).double = {lt: -1, gt: 1}];
  int32 gte_lt_out = 17 [(validate.rules).int32 = {lt: -1, gte: 1}];
  int32 lte_gt_out = 18 [(validate.rules).int32 = {lte: -1, gt: 1}];
  google.protobuf.BoolValue wrapped_bool = 19 [(validate.rules).bool.const = true];
}

message Str {
  string konst = 1 [(validate.rules).string.const = "abc"];
  string len = 2 [(validate.rules).string.len = 3];
  string min_max = 3 [(validate.rules).string = {min_len: 2, max_len: 3}];
  string bytes = 4 [(validate.rules).string = {min_bytes: 2, max_bytes: 4}];
  string len_bytes = 5 [(validate.rules).string.len_bytes = 2];
  string pattern = 6 [(validate.rules).string.pattern = "^[a-z]+\\d$"];
  string affixes = 7 [(validate.rules).string = {prefix: "pre", suffix: "suf", contains: "mid", not_contains: "bad"}];
  string in = 8 [(validate.rules).string = {in: ["a", "b"]}];
  string not_in = 9 [(validate.rules).string = {not_in: ["x"]}];
  string email = 10 [(validate.rules).string = {email: true, ignore_empty: true}];
  string hostname = 11 [(validate.rules).string = {hostname: true, ignore_empty: true}];
  string ip = 12 [(validate.rules).string = {ip: true, ignore_empty: true}];
  string ipv4 = 13 [(validate.rules).string = {ipv4: true, ignore_empty: true}];
  string ipv6 = 14 [(validate.rules).string = {ipv6: true, ignore_empty: true}];
  string uri = 15 [(validate.rules).string = {uri: true, ignore_empty: true}];
  string uri_ref = 16 [(validate.rules).string = {uri_ref: true, ignore_empty: true}];
  string address = 17 [(validate.rules).string = {address: true, ignore_empty: true}];
  string uuid = 18 [(validate.rules).string = {uuid: true, ignore_empty: true}];
  string header_name = 19 [(validate.rules).string = {well_known_regex: HTTP_HEADER_NAME}];
  string header_value = 20 [(validate.rules).string = {well_known_regex: HTTP_HEADER_VALUE}];
  string loose_name = 21 [(validate.rules).string = {well_known_regex: HTTP_HEADER_NAME, strict: false}];
  string max = 22 [(validate.rules).string.max_len = 2];
  string exact_range = 23 [(validate.rules).string = {min_len: 1, max_len: 1}];
  google.protobuf.StringValue wrapped = 24 [(validate.rules).string.min_len = 2];
  string max_bytes = 25 [(validate.rules).string.max_bytes = 3];
}

message Byt {
  bytes konst = 1 [(validate.rules).bytes.const = "\x01\x02"];
  bytes len = 2 [(validate.rules).bytes.len = 2];
  bytes range = 3 [(validate.rules).bytes = {min_len: 1, max_len: 3}];
  bytes affixes = 4 [(validate.rules).bytes = {prefix: "a", suffix: "z", contains: "m", ignore_empty: true}];
  bytes pattern = 5 [(validate.rules).bytes = {pattern: "^[a-c]+$", ignore_empty: true}];
  bytes in = 6 [(validate.rules).bytes = {in: ["x", "y"], ignore_empty: true}];
  bytes ip = 7 [(validate.rules).bytes = {ip: true, ignore_empty: true}];
  bytes ipv4 = 8 [(validate.rules).bytes = {ipv4: true, ignore_empty: true}];
  bytes ipv6 = 9 [(validate.rules).bytes = {ipv6: true, ignore_empty: true}];
}

message En {
  Color defined = 1 [(validate.rules).enum.defined_only = true];
  Color konst = 2 [(validate.rules).enum.const = 2];
  Color in = 3 [(validate.rules).enum = {in: [0, 1]}];
  Color not_in = 4 [(validate.rules).enum = {not_in: [2]}];
  repeated Color list = 5 [(validate.rules).repeated.items.enum.defined_only = true];
}

message Msg {
  Inner req = 1 [(validate.rules).message.required = true];
  Inner skipped = 2 [(validate.rules).message.skip = true];
  Inner plain = 3;
  oneof choice {
    option (validate.required) = true;
    string a = 4 [(validate.rules).string.min_len = 2];
    Inner b = 5;
  }
  optional string opt = 6 [(validate.rules).string.min_len = 2];
  repeated Inner items = 7 [(validate.rules).repeated = {min_items: 1, max_items: 2}];
  repeated string uniq = 8 [(validate.rules).repeated = {unique: true, items: {string: {min_len: 1}}}];
  repeated Inner skip_items = 9 [(validate.rules).repeated.items.message.skip = true];
  repeated string exact = 10 [(validate.rules).repeated = {min_items: 2, max_items: 2, ignore_empty: true}];
  map<string, Inner> m = 11 [(validate.rules).map = {min_pairs: 1, keys: {string: {min_len: 2}}, values: {message: {required: true}}}];
  map<string, string> mv = 12 [(validate.rules).map = {max_pairs: 1, values: {string: {prefix: "v"}}, ignore_empty: true}];
  map<string, Inner> plain_map = 13;
  google.protobuf.Any any = 14 [(validate.rules).any = {required: true, in: ["type.googleapis.com/t.Inner"]}];
  google.protobuf.Any any_not = 15 [(validate.rules).any = {not_in: ["type.googleapis.com/t.Inner"]}];
  google.protobuf.Duration dur = 16 [(validate.rules).duration = {required: true, gte: {seconds: 1}, lt: {seconds: 60}}];
  google.protobuf.Duration dur_in = 17 [(validate.rules).duration = {in: [{seconds: 1}, {nanos: 500000000}]}];
  google.protobuf.Duration dur_const = 18 [(validate.rules).duration.const = {seconds: 2}];
  google.protobuf.Timestamp ts = 19 [(validate.rules).timestamp = {gt: {seconds: 1000}}];
  google.protobuf.Timestamp ts_now = 20 [(validate.rules).timestamp = {lt_now: true}];
  google.protobuf.Timestamp ts_req = 21 [(validate.rules).timestamp.required = true];
  Inner any_on_msg = 22 [(validate.rules).any.required = true];
  google.protobuf.Duration plain_dur = 23;
  repeated google.protobuf.StringValue wrapped_items = 24 [(validate.rules).repeated.items.string.min_len = 1];
  map<int32, google.protobuf.Duration> dur_map = 25 [(validate.rules).map.values.duration.lte = {seconds: 5}];
  google.protobuf.Duration dur_out = 26 [(validate.rules).duration = {lt: {seconds: 1}, gt: {seconds: 5}}];
  google.protobuf.Timestamp ts_within = 27 [(validate.rules).timestamp.within = {seconds: 3600}];
}

message Disabled {
  option (validate.disabled) = true;
  string s = 1 [(validate.rules).string.min_len = 1];
  Inner inner = 2;
  google.protobuf.Duration d = 3;
}

message Ignored {
  option (validate.ignored) = true;
  string s = 1 [(validate.rules).string.min_len = 1];
}

message Holder {
  Disabled d = 1;
  Ignored i = 2;
  google.protobuf.Any a = 3;
  repeated google.protobuf.Any list = 4;
  Plain plain = 5;
}

message Plain { string s = 1; Plain next = 2; repeated Plain more = 3; }
"#;

    fn test_pool() -> &'static DescriptorPool {
        static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
            let dir = std::env::temp_dir().join(format!("rvoy-pgv-test-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            std::fs::write(dir.join("t.proto"), TEST_PROTO).expect("write proto");
            let pgv = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../rvoy-api/proto/protoc-gen-validate");
            let mut compiler = protox::Compiler::new([dir.clone(), pgv]).expect("includes");
            compiler.include_imports(true);
            compiler.open_file("t.proto").expect("compile t.proto");
            let pool = compiler.descriptor_pool();
            let _ = std::fs::remove_dir_all(&dir);
            pool
        });
        &POOL
    }

    fn t(type_name: &str, yaml: &str) -> Vec<String> {
        check(test_pool(), &format!("t.{type_name}"), yaml)
    }

    /// `base` with `field: value` appended (a later key wins in the reader).
    fn with(base: &str, extra: &str) -> String {
        format!("{base}{extra}\n")
    }

    const NUM_OK: &str = "gt: 1\nrange: 5\noutside: 25\nin: 2\nkonst: 7\nhalf_open: 0\noutside_closed: 10\nfl: 0.5\nyes: true\nwrapped_req: 10\noutside_open: 2\ngte_lt_out: 2\nlte_gt_out: 2\n";

    #[test]
    fn numbers() {
        assert_eq!(t("Num", NUM_OK), Vec::<String>::new());
        let cases: &[(&str, &str)] = &[
            ("gt: 0", "gt: value must be greater than 0"),
            ("range: 0", "range: value must be inside range [1, 10)"),
            ("range: 10", "range: value must be inside range [1, 10)"),
            (
                "outside: 15",
                "outside: value must be outside range [10, 20]",
            ),
            (
                "outside: 10",
                "outside: value must be outside range [10, 20]",
            ),
            ("outside: 9", ""),
            ("in: 4", "in: value must be in list [1 2 3]"),
            ("not_in: 5", "not_in: value must not be in list [5]"),
            ("konst: 8", "konst: value must equal 7"),
            ("lte: 6", "lte: value must be less than or equal to 5"),
            (
                "ignore: 4",
                "ignore: value must be greater than or equal to 5",
            ),
            (
                "half_open: -5",
                "half_open: value must be inside range (-5, 5]",
            ),
            ("half_open: 5", ""),
            (
                "outside_closed: 0",
                "outside_closed: value must be outside range (-5, 5)",
            ),
            ("outside_closed: -5", ""),
            ("fl: 1", "fl: value must be inside range (0, 1)"),
            ("db: 0.25", "db: value must be greater than or equal to 0.5"),
            ("db: 0", ""),
            ("yes: false", "yes: value must equal true"),
            (
                "wrapped: 9",
                "wrapped: value must be greater than or equal to 10",
            ),
            (
                "wrapped: 0",
                "wrapped: value must be greater than or equal to 10",
            ),
            (
                "wrapped_req: null",
                "wrapped_req: value is required and must not be nil.",
            ),
            (
                "outside_open: 0",
                "outside_open: value must be outside range [-1, 1]",
            ),
            (
                "outside_open: 1",
                "outside_open: value must be outside range [-1, 1]",
            ),
            ("outside_open: 1.5", ""),
            (
                "gte_lt_out: 0",
                "gte_lt_out: value must be outside range [-1, 1)",
            ),
            ("gte_lt_out: 1", ""),
            (
                "lte_gt_out: 1",
                "lte_gt_out: value must be outside range (-1, 1]",
            ),
            ("lte_gt_out: -1", ""),
            ("wrapped_bool: false", "wrapped_bool: value must equal true"),
        ];
        for (extra, want) in cases {
            let got = t("Num", &with(NUM_OK, extra));
            let want: Vec<String> = if want.is_empty() {
                vec![]
            } else {
                vec![(*want).to_owned()]
            };
            assert_eq!(got, want, "{extra}");
        }
        // Unset proto3 scalars are checked with their zero value.
        assert_eq!(
            t(
                "Num",
                "range: 5\noutside: 25\nin: 2\nkonst: 7\noutside_closed: 10\nfl: 0.5\nyes: true\nwrapped_req: 10\noutside_open: 2\ngte_lt_out: 2\nlte_gt_out: 2\n"
            ),
            ["gt: value must be greater than 0"]
        );
    }

    const STR_OK: &str = "konst: abc\nlen: \"é€x\"\nmin_max: ab\nbytes: ab\nlen_bytes: ab\npattern: ab1\naffixes: premidsuf\nin: a\nheader_name: x-ok\nexact_range: z\n";

    #[test]
    fn strings() {
        assert_eq!(t("Str", STR_OK), Vec::<String>::new());
        let cases: &[(&str, &str)] = &[
            ("konst: abd", "konst: value must equal \"abc\""),
            ("len: ab", "len: value must be 3 characters"),
            ("len: \"éé€€\"", "len: value must be 3 characters"),
            (
                "min_max: a",
                "min_max: value must have between 2 and 3 characters inclusive",
            ),
            ("min_max: \"€€€\"", ""),
            (
                "min_max: abcd",
                "min_max: value must have between 2 and 3 characters inclusive",
            ),
            (
                "bytes: a",
                "bytes: value length must be between 2 and 4 bytes, inclusive",
            ),
            (
                "bytes: \"€€\"",
                "bytes: value length must be between 2 and 4 bytes, inclusive",
            ),
            ("len_bytes: \"é\"", ""),
            ("len_bytes: abc", "len_bytes: value length must be 2 bytes"),
            (
                "pattern: ab",
                "pattern: value does not match regex pattern \"^[a-z]+\\\\d$\"",
            ),
            // RE2's \d is ASCII only.
            (
                "pattern: \"ab١\"",
                "pattern: value does not match regex pattern \"^[a-z]+\\\\d$\"",
            ),
            (
                "affixes: xmidsuf",
                "affixes: value does not have prefix \"pre\"",
            ),
            (
                "affixes: premidsux",
                "affixes: value does not have suffix \"suf\"",
            ),
            (
                "affixes: presuf",
                "affixes: value does not contain substring \"mid\"",
            ),
            (
                "affixes: premidbadsuf",
                "affixes: value contains substring \"bad\"",
            ),
            ("in: c", "in: value must be in list [a b]"),
            ("not_in: x", "not_in: value must not be in list [x]"),
            ("email: a@b.c", ""),
            ("email: \"Joe <joe@example.com>\"", ""),
            ("email: joe", "email: value must be a valid email address"),
            (
                "email: joe@-bad.com",
                "email: value must be a valid email address",
            ),
            ("hostname: www.example.com", ""),
            ("hostname: example.com.", ""),
            (
                "hostname: -a.com",
                "hostname: value must be a valid hostname",
            ),
            ("hostname: a..b", "hostname: value must be a valid hostname"),
            (
                "hostname: a_b.com",
                "hostname: value must be a valid hostname",
            ),
            ("ip: 10.0.0.1", ""),
            ("ip: \"::1\"", ""),
            ("ip: 10.0.0", "ip: value must be a valid IP Address"),
            ("ipv4: \"::1\"", "ipv4: value must be a valid IPv4 Address"),
            ("ipv6: 10.0.0.1", "ipv6: value must be a valid IPv6 Address"),
            ("ipv6: \"fe80::1\"", ""),
            ("uri: \"https://example.com/a?b=c#d\"", ""),
            ("uri: /relative", "uri: value must be a valid, absolute URI"),
            (
                "uri: \"http://a b\"",
                "uri: value must be a valid, absolute URI",
            ),
            ("uri_ref: /relative/path?x=%20", ""),
            ("uri_ref: \"%zz\"", "uri_ref: value must be a valid URI"),
            ("address: 10.1.2.3", ""),
            ("address: my-host", ""),
            (
                "address: \"my host\"",
                "address: value must be an ip address, or a hostname.",
            ),
            ("uuid: 123e4567-e89b-12d3-a456-426614174000", ""),
            (
                "uuid: 123e4567e89b12d3a456426614174000",
                "uuid: value must be a valid UUID",
            ),
            ("header_name: \":path\"", ""),
            ("header_name: \"!#$%&'*+-.^_|~`\"", ""),
            (
                "header_name: \":\"",
                "header_name: value must be a valid HTTP header name",
            ),
            (
                "header_name: \"a b\"",
                "header_name: value must be a valid HTTP header name",
            ),
            (
                "header_name: \"a:b\"",
                "header_name: value must be a valid HTTP header name",
            ),
            ("header_value: \"a b\\tc\"", ""),
            (
                "header_value: \"a\\rb\"",
                "header_value: value must be a valid HTTP header value",
            ),
            (
                "header_value: \"a\\u007fb\"",
                "header_value: value must be a valid HTTP header value",
            ),
            ("loose_name: \"a b:c\"", ""),
            (
                "loose_name: \"a\\nb\"",
                "loose_name: value must not contain NUL, CR or LF characters",
            ),
            ("max: abc", "max: value length must be at most 2 characters"),
            ("max: \"éé\"", ""),
            ("exact_range: zz", "exact_range: value must be 1 characters"),
            (
                "wrapped: a",
                "wrapped: value length must be at least 2 characters",
            ),
            (
                "wrapped: ''",
                "wrapped: value length must be at least 2 characters",
            ),
            (
                "max_bytes: \"éé\"",
                "max_bytes: value length must be at most 3 bytes",
            ),
        ];
        for (extra, want) in cases {
            let got = t("Str", &with(STR_OK, extra));
            let want: Vec<String> = if want.is_empty() {
                vec![]
            } else {
                vec![(*want).to_owned()]
            };
            assert_eq!(got, want, "{extra}");
        }
        // Unset strings are checked as "" (header_name needs one char at least).
        let errors = t("Str", "{}");
        assert!(
            errors.contains(&"konst: value must equal \"abc\"".to_owned()),
            "{errors:?}"
        );
        assert!(errors.contains(&"header_name: value must be a valid HTTP header name".to_owned()));
        assert!(
            !errors
                .iter()
                .any(|e| e.starts_with("email") || e.starts_with("wrapped"))
        );
    }

    #[test]
    fn bytes() {
        // base64: AQI= is [1, 2]; YWJj is "abc"; bXo= is "mz".
        let ok = "konst: AQI=\nlen: AQI=\nrange: AQI=\n";
        assert_eq!(t("Byt", ok), Vec::<String>::new());
        let cases: &[(&str, &str)] = &[
            ("konst: AQM=", "konst: value must equal \"\\x01\\x02\""),
            ("len: AQID", "len: value length must be 2 bytes"),
            (
                "range: AQIDBA==",
                "range: value length must be between 1 and 3 bytes, inclusive",
            ),
            ("affixes: YW16", ""),
            ("affixes: YWJj", "affixes: value does not have suffix \"z\""),
            ("affixes: bXo=", "affixes: value does not have prefix \"a\""),
            (
                "affixes: YXo=",
                "affixes: value does not contain substring \"m\"",
            ),
            ("pattern: YWJj", ""),
            (
                "pattern: YWJkZA==",
                "pattern: value does not match regex pattern \"^[a-c]+$\"",
            ),
            ("in: eA==", ""),
            ("in: eg==", "in: value must be in list [\"x\" \"y\"]"),
            ("ip: CgAAAQ==", ""),
            ("ip: CgAA", "ip: value must be a valid IP address"),
            ("ipv4: CgAAAQ==", ""),
            (
                "ipv4: AAAAAAAAAAAAAAAAAAAAAQ==",
                "ipv4: value must be a valid IPv4 address",
            ),
            ("ipv6: AAAAAAAAAAAAAAAAAAAAAQ==", ""),
            ("ipv6: CgAAAQ==", "ipv6: value must be a valid IPv6 address"),
        ];
        for (extra, want) in cases {
            let got = t("Byt", &with(ok, extra));
            let want: Vec<String> = if want.is_empty() {
                vec![]
            } else {
                vec![(*want).to_owned()]
            };
            assert_eq!(got, want, "{extra}");
        }
        assert_eq!(
            t("Byt", "{}"),
            [
                "konst: value must equal \"\\x01\\x02\"",
                "len: value length must be 2 bytes",
                "range: value length must be between 1 and 3 bytes, inclusive",
            ]
        );
    }

    #[test]
    fn enums() {
        // Unset, `in` is COLOR_UNSPECIFIED (0), which is in the list.
        assert_eq!(t("En", "konst: GREEN\n"), Vec::<String>::new());
        assert_eq!(t("En", "{}"), ["konst: value must equal GREEN"]);
        let ok = "konst: GREEN\nin: RED\n";
        assert_eq!(t("En", ok), Vec::<String>::new());
        assert_eq!(
            t("En", &with(ok, "defined: 7")),
            ["defined: value must be one of the defined enum values"]
        );
        assert_eq!(
            t("En", &with(ok, "konst: RED")),
            ["konst: value must equal GREEN"]
        );
        assert_eq!(
            t("En", &with(ok, "in: GREEN")),
            ["in: value must be in list [COLOR_UNSPECIFIED RED]"]
        );
        assert_eq!(
            t("En", &with(ok, "not_in: GREEN")),
            ["not_in: value must not be in list [GREEN]"]
        );
        assert_eq!(
            t("En", &with(ok, "list: [RED, 9, GREEN, 10]")),
            [
                "list[1]: value must be one of the defined enum values",
                "list[3]: value must be one of the defined enum values",
            ]
        );
    }

    const MSG_OK: &str = "req: {id: x}\na: ab\nitems: [{id: x}]\nm: {ab: {id: yy}}\nany: {'@type': type.googleapis.com/t.Inner, id: z}\ndur: 1s\nts_req: '2020-01-01T00:00:00Z'\nany_on_msg: {}\n";

    #[test]
    fn messages_oneofs_and_collections() {
        assert_eq!(t("Msg", MSG_OK), Vec::<String>::new());
        let cases: &[(&str, &[&str])] = &[
            ("req: null", &["req: value is required"]),
            (
                "req: {}",
                &["req.id: value length must be at least 1 characters"],
            ),
            ("skipped: {}", &[]),
            (
                "plain: {}",
                &["plain.id: value length must be at least 1 characters"],
            ),
            ("a: x", &["a: value length must be at least 2 characters"]),
            (
                "opt: x",
                &["opt: value length must be at least 2 characters"],
            ),
            ("opt: xy", &[]),
            (
                "items: []",
                &["items: value must contain between 1 and 2 items, inclusive"],
            ),
            (
                "items: [{id: a}, {id: b}, {id: c}]",
                &["items: value must contain between 1 and 2 items, inclusive"],
            ),
            (
                "items: [{id: a}, {}]",
                &["items[1].id: value length must be at least 1 characters"],
            ),
            (
                "uniq: [a, b, a, '']",
                &[
                    "uniq[2]: repeated value must contain unique items",
                    "uniq[3]: value length must be at least 1 characters",
                ],
            ),
            ("skip_items: [{}]", &[]),
            (
                "exact: [a]",
                &["exact: value must contain exactly 2 item(s)"],
            ),
            ("exact: [a, b]", &[]),
            ("m: {}", &["m: value must contain at least 1 pair(s)"]),
            (
                "m: {a: {id: yy}, bb: {}}",
                &[
                    "m['a']: invalid key: value length must be at least 2 characters",
                    "m['bb'].id: value length must be at least 1 characters",
                ],
            ),
            (
                "mv: {a: vx, b: vy}",
                &["mv: value must contain no more than 1 pair(s)"],
            ),
            ("mv: {a: x}", &["mv['a']: value does not have prefix \"v\""]),
            (
                "plain_map: {k: {}}",
                &["plain_map['k'].id: value length must be at least 1 characters"],
            ),
            ("any: null", &["any: value is required"]),
            (
                "any: {'@type': type.googleapis.com/t.Plain}",
                &["any: type URL must be in list [type.googleapis.com/t.Inner]"],
            ),
            // The Any's contents are validated as the message they hold.
            (
                "any: {'@type': type.googleapis.com/t.Inner}",
                &["any.id: value length must be at least 1 characters"],
            ),
            (
                "any_not: {'@type': type.googleapis.com/t.Inner, id: q}",
                &["any_not: type URL must not be in list [type.googleapis.com/t.Inner]"],
            ),
            ("dur: null", &["dur: value is required"]),
            ("dur: 0.5s", &["dur: value must be inside range [1s, 1m0s)"]),
            ("dur: 60s", &["dur: value must be inside range [1s, 1m0s)"]),
            ("dur: 59.999999999s", &[]),
            ("dur_in: 0.5s", &[]),
            ("dur_in: 2s", &["dur_in: value must be in list [1s 500ms]"]),
            ("dur_const: 3s", &["dur_const: value must equal 2s"]),
            (
                "dur_out: 3s",
                &["dur_out: value must be outside range [1s, 5s]"],
            ),
            ("dur_out: 6s", &[]),
            (
                "dur_map: {1: 5s, 2: 6s}",
                &["dur_map['2']: value must be less than or equal to 5s"],
            ),
            (
                "ts: '1970-01-01T00:16:40Z'",
                &["ts: value must be greater than 1970-01-01T00:16:40Z"],
            ),
            ("ts: '1970-01-01T00:16:41Z'", &[]),
            (
                "ts_now: '2999-01-01T00:00:00Z'",
                &["ts_now: value must be less than now"],
            ),
            ("ts_now: '2001-01-01T00:00:00Z'", &[]),
            (
                "ts_within: '2001-01-01T00:00:00Z'",
                &["ts_within: value must be within 1h0m0s of now"],
            ),
            ("ts_req: null", &["ts_req: value is required"]),
            ("any_on_msg: null", &["any_on_msg: value is required"]),
            // `any` rules on a message field: presence only, no recursion.
            ("any_on_msg: {id: ''}", &[]),
            (
                "wrapped_items: ['', a]",
                &["wrapped_items[0]: value length must be at least 1 characters"],
            ),
        ];
        for (extra, want) in cases {
            let got = t("Msg", &with(MSG_OK, extra));
            assert_eq!(got, *want, "{extra}");
        }
        assert_eq!(
            t("Msg", &MSG_OK.replace("a: ab\n", "b: {}\n")),
            ["b.id: value length must be at least 1 characters"]
        );
        // The oneof is required.
        let no_choice = MSG_OK.replace("a: ab\n", "");
        assert_eq!(
            t("Msg", &no_choice),
            [": exactly one of 'a', 'b' must be set (oneof 'choice' is required)"]
        );
    }

    #[test]
    fn global_duration_rule_applies_under_anything() {
        // In a field without rules, in a map value, and under a disabled message.
        assert_eq!(
            t("Msg", &with(MSG_OK, "plain_dur: -1s"))[0],
            "plain_dur: invalid duration: must be non-negative (Envoy: \"Invalid duration: Expected positive duration\")"
        );
        let errors = t("Msg", &with(MSG_OK, "dur_map: {3: -1s}"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("dur_map['3']: invalid duration"),
            "{errors:?}"
        );
        let errors = t("Holder", "d: {d: -1s}\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("d.d: invalid duration"), "{errors:?}");
    }

    #[test]
    fn disabled_and_ignored_messages() {
        assert_eq!(
            t("Holder", "d: {s: '', inner: {}}\ni: {s: ''}\n"),
            Vec::<String>::new()
        );
        assert_eq!(t("Disabled", "{}"), Vec::<String>::new());
        // An Any below restarts validation, as Envoy validates typed configs.
        assert_eq!(
            t(
                "Holder",
                "a: {'@type': type.googleapis.com/t.Inner}\nlist: [{'@type': type.googleapis.com/t.Msg}]\n"
            ),
            [
                "a.id: value length must be at least 1 characters",
                "list[0].req: value is required",
                "list[0].items: value must contain between 1 and 2 items, inclusive",
                "list[0].m: value must contain at least 1 pair(s)",
                "list[0].any: value is required",
                "list[0].dur: value is required",
                "list[0].ts_req: value is required",
                "list[0].any_on_msg: value is required",
                "list[0]: exactly one of 'a', 'b' must be set (oneof 'choice' is required)",
            ]
        );
    }

    #[test]
    fn types_without_rules_are_not_walked() {
        let pool = test_pool();
        let table = TypeTable::<MessagePlan>::for_pool(&TABLES, pool);
        let plain = pool.get_message_by_name("t.Plain").expect("Plain");
        assert!(!table.visit(&plain));
        let holder = pool.get_message_by_name("t.Holder").expect("Holder");
        assert!(table.visit(&holder));
        let envoy_pool = envoy_pool();
        let table = TypeTable::<MessagePlan>::for_pool(&TABLES, envoy_pool);
        let s = envoy_pool
            .get_message_by_name("google.protobuf.Struct")
            .expect("Struct");
        assert!(!table.visit(&s));
        let b = envoy_pool
            .get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
            .expect("Bootstrap");
        assert!(table.visit(&b));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        // 120 nested RBAC permissions (`not_rule`): the walk stops at depth 100
        // without exhausting a test thread's stack.
        let mut yaml = String::from("{any: true}");
        for _ in 0..120 {
            yaml = format!("{{not_rule: {yaml}}}");
        }
        let msg = read(envoy_pool(), "envoy.config.rbac.v3.Permission", &yaml);
        assert_eq!(
            validate(&msg, &FieldPath::root()),
            Vec::<ConfigError>::new()
        );
        let report = crate::deprecation::check(&msg, &FieldPath::root());
        assert!(report.errors.is_empty() && report.warnings.is_empty());
        let bad = yaml.replace("{any: true}", "{}");
        let msg = read(envoy_pool(), "envoy.config.rbac.v3.Permission", &bad);
        assert_eq!(
            validate(&msg, &FieldPath::root()),
            Vec::<ConfigError>::new()
        );
        let shallow = "{not_rule: {not_rule: {}}}";
        let msg = read(envoy_pool(), "envoy.config.rbac.v3.Permission", shallow);
        let errors = render(&validate(&msg, &FieldPath::root()));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("not_rule.not_rule: exactly one of 'and_rules', 'or_rules', 'any', ")
        );
        assert!(errors[0].ends_with(" must be set (oneof 'rule' is required)"));
    }

    #[test]
    fn helpers() {
        assert!(is_hostname("a"));
        assert!(is_hostname("a-b.c."));
        assert!(!is_hostname(""));
        assert!(!is_hostname("."));
        assert!(!is_hostname(".a"));
        assert!(!is_hostname("a-"));
        assert!(!is_hostname(&"a".repeat(64)));
        assert!(!is_hostname(&["a"; 128].join(".")));
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1), "1ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(1_000_000), "1ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(60_000_000_000), "1m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(-90_000_000_000), "-1m30s");
        assert_eq!(
            compile_re2(r"\d\w[\s\D]").as_deref(),
            Some(r"^(?:[0-9][0-9A-Za-z_][\t\n\f\r [^0-9]])$")
        );
        assert!(compile_re2(r"\C").is_none());
        assert!(
            compile_re2(r"^[0-9a-zA-Z_\-\./~:]+$")
                .and_then(|p| Regex::new(&p).ok())
                .is_some_and(|r| r.is_match("a-b/c:d~"))
        );
        assert_eq!(
            count_check(0, Some(1), None, "item(s)", "items").as_deref(),
            Some("value must contain at least 1 item(s)")
        );
        assert_eq!(
            count_check(3, None, Some(2), "item(s)", "items").as_deref(),
            Some("value must contain no more than 2 item(s)")
        );
        assert_eq!(
            count_check(1, Some(0), Some(0), "item(s)", "items").as_deref(),
            Some("value must contain no more than 0 item(s)")
        );
    }
}
