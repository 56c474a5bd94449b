//! Robokassa's merchant interface as pure functions (see `shared/specs/robokassa.md`): the
//! signed payment link (Password #1), the 54-FZ receipt, and the checks of the ResultURL
//! callback (Password #2, the only thing that may mark an invoice paid) and of the SuccessURL
//! redirect (Password #1, display only). No I/O and no clock: the server and the Worker feed
//! in the received key/value pairs and put the returned strings on the wire themselves.
//!
//! Two rules from the spec shape everything here. Signatures are computed over the strings
//! exactly as they travel (a live callback's `OutSum=490.000000` is hashed as received, never
//! re-formatted), while amounts are compared as exact decimals ([`Amount`]). And `Shp_*`
//! parameters are sorted by key, byte order, both in the link and in every signature.

use crate::model::lang::Lang;
use crate::model::secret::Secret;
use std::fmt;
use subtle::ConstantTimeEq;

/// Robokassa's payment page (spec §1: use `Index.aspx`).
pub const DEFAULT_PAYMENT_URL: &str = "https://auth.robokassa.ru/Merchant/Index.aspx";

/// Longest `Description` Robokassa takes, in characters (spec §1).
pub const MAX_DESCRIPTION_CHARS: usize = 100;

/// Longest receipt item name, in characters (spec §5).
pub const MAX_RECEIPT_NAME_CHARS: usize = 128;

// ---------------------------------------------------------------------------------------------
// Hash algorithms
// ---------------------------------------------------------------------------------------------

/// The shop's "hash algorithm" setting (spec §2.4); MD5 is Robokassa's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlg {
    #[default]
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    Ripemd160,
}

impl HashAlg {
    /// Parses a `ROBOKASSA_HASH` value: `md5`, `sha1`, `sha256`, `sha384`, `sha512` or
    /// `ripemd160`, in any case.
    pub fn parse(s: &str) -> Option<HashAlg> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "md5" => HashAlg::Md5,
            "sha1" => HashAlg::Sha1,
            "sha256" => HashAlg::Sha256,
            "sha384" => HashAlg::Sha384,
            "sha512" => HashAlg::Sha512,
            "ripemd160" => HashAlg::Ripemd160,
            _ => return None,
        })
    }

    /// The setting's name, as `parse` accepts it.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlg::Md5 => "md5",
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
            HashAlg::Ripemd160 => "ripemd160",
        }
    }

    /// The lowercase hex digest of the UTF-8 bytes of `input`.
    pub fn hex_digest(&self, input: &str) -> String {
        use sha2::Digest;
        let bytes = input.as_bytes();
        match self {
            HashAlg::Md5 => hex::encode(md5::Md5::digest(bytes)),
            HashAlg::Sha1 => hex::encode(sha1::Sha1::digest(bytes)),
            HashAlg::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            HashAlg::Sha384 => hex::encode(sha2::Sha384::digest(bytes)),
            HashAlg::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
            HashAlg::Ripemd160 => hex::encode(ripemd::Ripemd160::digest(bytes)),
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Merchant settings
// ---------------------------------------------------------------------------------------------

/// One shop's settings. In test mode `password1`/`password2` must hold the shop's separate
/// *test* pair (spec §4): Robokassa signs test callbacks with it, so a live configuration
/// rejects a test-signed callback by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub login: String,
    /// Signs the payment link and the SuccessURL redirect.
    pub password1: Secret,
    /// Signs the ResultURL callback.
    pub password2: Secret,
    pub hash: HashAlg,
    /// Adds `IsTest=1` to payment links.
    pub test_mode: bool,
    pub payment_url: String,
}

impl Merchant {
    /// A live shop with MD5 and the default payment page.
    pub fn new(login: impl Into<String>, password1: Secret, password2: Secret) -> Merchant {
        Merchant {
            login: login.into(),
            password1,
            password2,
            hash: HashAlg::Md5,
            test_mode: false,
            payment_url: DEFAULT_PAYMENT_URL.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Money
// ---------------------------------------------------------------------------------------------

/// An exact, non-negative amount of roubles, held in kopecks. Equality is decimal equality,
/// so `490.000000` (a live callback) equals `490.00` (our invoice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_kopecks(kopecks: u64) -> Amount {
        Amount(kopecks)
    }

    /// Whole roubles; `None` on overflow.
    pub const fn from_rubles(rubles: u64) -> Option<Amount> {
        match rubles.checked_mul(100) {
            Some(k) => Some(Amount(k)),
            None => None,
        }
    }

    pub const fn kopecks(self) -> u64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses a dot-decimal like `490`, `490.00`, `490.000000` or `1290.5`. Digits are
    /// required on both sides of a dot; a sign, a comma, spaces, an exponent, or non-zero
    /// digits past the kopecks are rejected.
    pub fn parse(s: &str) -> Option<Amount> {
        let (int, frac) = match s.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (s, None),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut kopecks: u64 = 0;
        for b in int.bytes() {
            kopecks = kopecks.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        kopecks = kopecks.checked_mul(100)?;
        if let Some(frac) = frac {
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = frac.as_bytes();
            if digits.iter().skip(2).any(|&b| b != b'0') {
                return None;
            }
            let tens = digits.first().map_or(0, |b| u64::from(b - b'0'));
            let ones = digits.get(1).map_or(0, |b| u64::from(b - b'0'));
            kopecks = kopecks.checked_add(tens * 10 + ones)?;
        }
        Some(Amount(kopecks))
    }

    /// The shortest exact decimal (`490`, `1290.5`, `0.01`): the number written into the
    /// receipt JSON.
    pub fn to_json_number(self) -> String {
        let (r, k) = (self.0 / 100, self.0 % 100);
        match k {
            0 => r.to_string(),
            k if k % 10 == 0 => format!("{r}.{}", k / 10),
            k => format!("{r}.{k:02}"),
        }
    }
}

/// Two decimals, e.g. `490.00`: the `OutSum` we send and sign in payment links (spec §2.5).
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

// ---------------------------------------------------------------------------------------------
// Receipt (54-FZ)
// ---------------------------------------------------------------------------------------------

/// A 54-FZ receipt (spec §5): the items and, optionally, the tax system (`sno`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// `osn`, `usn_income`, `usn_income_outcome`, `esn` or `patent`; `None` = the cabinet's.
    pub sno: Option<String>,
    pub items: Vec<ReceiptItem>,
}

/// One receipt line. `None` for `payment_method`/`payment_object` leaves the cabinet's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptItem {
    pub name: String,
    pub quantity: u32,
    /// The line total.
    pub sum: Amount,
    /// `none`, `vat0`, `vat10`, `vat20`, `vat110`, `vat120`, `vat5`, `vat7`, `vat105`, `vat107`.
    pub tax: String,
    pub payment_method: Option<String>,
    pub payment_object: Option<String>,
}

impl Receipt {
    /// The subscription receipt: one service paid in full in advance
    /// (`quantity` 1, `payment_method` `full_prepayment`, `payment_object` `service`).
    /// The name is cut to 128 characters, Robokassa's limit.
    pub fn service(name: &str, sum: Amount, tax: &str, sno: Option<&str>) -> Receipt {
        Receipt {
            sno: sno.map(str::to_string),
            items: vec![ReceiptItem {
                name: name.chars().take(MAX_RECEIPT_NAME_CHARS).collect(),
                quantity: 1,
                sum,
                tax: tax.to_string(),
                payment_method: Some("full_prepayment".to_string()),
                payment_object: Some("service".to_string()),
            }],
        }
    }

    /// The JSON, compact and in a fixed key order: `sno` (if any), then `items` with `name`,
    /// `quantity`, `sum` (a number), `tax`, `payment_method`, `payment_object`. Non-ASCII text
    /// stays as UTF-8, as in the official plugin's `JSON_UNESCAPED_UNICODE`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        if let Some(sno) = &self.sno {
            out.push_str("\"sno\":");
            out.push_str(&json_string(sno));
            out.push(',');
        }
        out.push_str("\"items\":[");
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            out.push_str(&json_string(&item.name));
            out.push_str(&format!(",\"quantity\":{}", item.quantity));
            out.push_str(&format!(",\"sum\":{}", item.sum.to_json_number()));
            out.push_str(",\"tax\":");
            out.push_str(&json_string(&item.tax));
            if let Some(method) = &item.payment_method {
                out.push_str(",\"payment_method\":");
                out.push_str(&json_string(method));
            }
            if let Some(object) = &item.payment_object {
                out.push_str(",\"payment_object\":");
                out.push_str(&json_string(object));
            }
            out.push('}');
        }
        out.push_str("]}");
        out
    }

    /// The JSON URL-encoded once, PHP `urlencode` style (space → `+`): the form that is
    /// signed and that Robokassa sees after decoding the request once (spec §5).
    pub fn encoded(&self) -> String {
        form_urlencode(&self.to_json())
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

// ---------------------------------------------------------------------------------------------
// Payment link
// ---------------------------------------------------------------------------------------------

/// What one payment link asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// Our invoice number, unique per payment (1 … 2^63−1).
    pub inv_id: i64,
    pub out_sum: Amount,
    /// Shown on the payment page; cut to 100 characters.
    pub description: String,
    pub culture: Lang,
    /// User parameters, e.g. `("Shp_plan", "30")`. Keys start with `Shp_`; keep them lowercase
    /// ASCII after the prefix, none a prefix of another, and values ASCII (spec §2.6), since
    /// Robokassa's sort rule is not documented. Values are signed as given.
    pub shp: Vec<(String, String)>,
    pub receipt: Option<Receipt>,
    /// Pre-fills the buyer's e-mail; not signed.
    pub email: Option<String>,
}

/// The `SignatureValue` of a payment link (lowercase hex):
/// `MerchantLogin:OutSum:InvId[:Receipt]:Password#1[:Shp_a=x:Shp_b=y]`, with `OutSum` as
/// `490.00`, the receipt once-encoded and the `Shp_*` sorted by key.
pub fn link_signature(m: &Merchant, req: &PaymentRequest) -> String {
    let mut base = format!("{}:{}:{}", m.login, req.out_sum, req.inv_id);
    if let Some(receipt) = &req.receipt {
        base.push(':');
        base.push_str(&receipt.encoded());
    }
    base.push(':');
    base.push_str(m.password1.expose());
    append_shp(&mut base, &sorted_shp(&req.shp));
    m.hash.hex_digest(&base)
}

/// The full GET link to the payment page. Query order: `MerchantLogin`, `OutSum`, `InvId`,
/// `Description`, `Culture`, `Encoding=utf-8`, [`Email`], [`Receipt`], [`IsTest=1`],
/// `Shp_*` (sorted by key), `SignatureValue`. Values are percent-encoded (RFC 3986 unreserved
/// characters kept, space as `%20`); the receipt is therefore encoded twice (spec §5).
pub fn payment_url(m: &Merchant, req: &PaymentRequest) -> String {
    for (key, _) in &req.shp {
        debug_assert!(
            is_shp_key(key),
            "user parameter {key:?} lacks the Shp_ prefix"
        );
    }
    let description: String = req
        .description
        .chars()
        .take(MAX_DESCRIPTION_CHARS)
        .collect();
    let out_sum = req.out_sum.to_string();
    let inv_id = req.inv_id.to_string();
    let receipt = req.receipt.as_ref().map(Receipt::encoded);
    let signature = link_signature(m, req);

    let mut query: Vec<(&str, &str)> = vec![
        ("MerchantLogin", &m.login),
        ("OutSum", &out_sum),
        ("InvId", &inv_id),
        ("Description", &description),
        ("Culture", req.culture.code()),
        ("Encoding", "utf-8"),
    ];
    if let Some(email) = &req.email {
        query.push(("Email", email));
    }
    if let Some(receipt) = &receipt {
        query.push(("Receipt", receipt));
    }
    if m.test_mode {
        query.push(("IsTest", "1"));
    }
    let shp = sorted_shp(&req.shp);
    for (key, value) in &shp {
        query.push((key, value));
    }
    query.push(("SignatureValue", &signature));

    let mut url = m.payment_url.clone();
    url.push(if url.contains('?') { '&' } else { '?' });
    for (i, (key, value)) in query.iter().enumerate() {
        if i > 0 {
            url.push('&');
        }
        url.push_str(&query_encode(key));
        url.push('=');
        url.push_str(&query_encode(value));
    }
    url
}

// ---------------------------------------------------------------------------------------------
// Callbacks: ResultURL and SuccessURL
// ---------------------------------------------------------------------------------------------

/// A verified callback. `out_sum_raw` is the string as received (the one that was signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultNotice {
    pub inv_id: i64,
    pub out_sum: Amount,
    pub out_sum_raw: String,
    /// The `Shp_*` pairs as received, sorted by key.
    pub shp: Vec<(String, String)>,
    /// `IsTest=1` was present. Informational: the flag is not signed; what makes a callback a
    /// test one is that it verifies only with the test passwords.
    pub is_test: bool,
    /// The `SignatureValue` (or `crc`) as received, trimmed: the one that verified. Only this
    /// may go to a log redaction list; a refused callback's "signature" is whatever its
    /// sender chose.
    pub signature: Secret,
}

impl ResultNotice {
    /// The value of one user parameter, the key matched exactly.
    pub fn shp_value(&self, key: &str) -> Option<&str> {
        self.shp
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a callback was refused. Never contains a password or the received signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    #[error("callback field {0} is missing")]
    MissingField(&'static str),
    #[error("callback field {0:?} is given twice with different values")]
    ConflictingField(String),
    #[error("callback signature does not match")]
    BadSignature,
    #[error("callback OutSum is not a valid amount")]
    BadAmount,
    #[error("callback InvId is not a valid invoice number")]
    BadInvId,
}

/// Checks a ResultURL callback (GET query or POST form, already decoded once into pairs)
/// against Password #2: `OutSum:InvId:Password#2[:Shp_*=… sorted by key]` over the received
/// strings, compared case-insensitively in constant time.
///
/// Keys match in any case. `OutSum`, `InvId`, `SignatureValue` win over the legacy duplicates
/// `out_summ`, `inv_id`, `crc`, which are read only when the modern field is absent. A field
/// repeated with different values is refused, as is an `InvId` that is not a positive integer.
pub fn verify_result(
    m: &Merchant,
    params: &[(String, String)],
) -> Result<ResultNotice, ResultError> {
    verify_callback(m.hash, &m.password2, params)
}

/// Checks a SuccessURL redirect the same way, with Password #1 (spec §2.3). The redirect comes
/// through the buyer's browser: show it, never activate on it. The landing page does not need
/// it (it only shows the order number), so it is kept for the tests that pin the two passwords
/// apart.
#[cfg(test)]
fn verify_success(m: &Merchant, params: &[(String, String)]) -> Result<ResultNotice, ResultError> {
    verify_callback(m.hash, &m.password1, params)
}

/// The ResultURL signature (lowercase hex) of the given received strings, with Password #2:
/// what a fake Robokassa sends and what [`verify_result`] expects.
pub fn result_signature(
    m: &Merchant,
    out_sum: &str,
    inv_id: &str,
    shp: &[(String, String)],
) -> String {
    callback_signature(m.hash, &m.password2, out_sum, inv_id, shp)
}

/// The SuccessURL signature (lowercase hex), with Password #1.
#[cfg(test)]
fn success_signature(
    m: &Merchant,
    out_sum: &str,
    inv_id: &str,
    shp: &[(String, String)],
) -> String {
    callback_signature(m.hash, &m.password1, out_sum, inv_id, shp)
}

/// The body that acknowledges a ResultURL callback: `OK{InvId}`. Send it as `text/plain`
/// with status 200, for duplicates too.
pub fn result_ok_body(inv_id: i64) -> String {
    format!("OK{inv_id}")
}

fn callback_signature(
    hash: HashAlg,
    password: &Secret,
    out_sum: &str,
    inv_id: &str,
    shp: &[(String, String)],
) -> String {
    signature_of_sorted(hash, password, out_sum, inv_id, &sorted_shp(shp))
}

/// [`callback_signature`] of `Shp_*` pairs already sorted by key.
fn signature_of_sorted(
    hash: HashAlg,
    password: &Secret,
    out_sum: &str,
    inv_id: &str,
    sorted: &[(String, String)],
) -> String {
    let mut base = format!("{out_sum}:{inv_id}:{}", password.expose());
    append_shp(&mut base, sorted);
    hash.hex_digest(&base)
}

fn verify_callback(
    hash: HashAlg,
    password: &Secret,
    params: &[(String, String)],
) -> Result<ResultNotice, ResultError> {
    let out_sum = field(params, "OutSum", "out_summ")?;
    let inv_id = field(params, "InvId", "inv_id")?;
    let signature = field(params, "SignatureValue", "crc")?;
    let shp = callback_shp(params, &mut str::cmp)?;

    let expected = signature_of_sorted(hash, password, out_sum, inv_id, &shp);
    let received = signature.trim().to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(received.as_bytes())) {
        return Err(ResultError::BadSignature);
    }

    let inv_id = parse_inv_id(inv_id).ok_or(ResultError::BadInvId)?;
    let amount = Amount::parse(out_sum).ok_or(ResultError::BadAmount)?;
    let is_test = params
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("IsTest") && v.trim() == "1");
    Ok(ResultNotice {
        inv_id,
        out_sum: amount,
        out_sum_raw: out_sum.to_string(),
        shp,
        is_test,
        signature: Secret::new(signature.trim()),
    })
}

/// The `Shp_*` pairs of a callback sorted by key (byte order, as `compare` says), each key
/// once; a key repeated with another value is refused. One stable sort and one pass over
/// neighbours: O(n log n) comparisons for n fields, so no caller can make the check cost more
/// (`compare` is a parameter only so that a test can count the comparisons).
fn callback_shp(
    params: &[(String, String)],
    compare: &mut impl FnMut(&str, &str) -> std::cmp::Ordering,
) -> Result<Vec<(String, String)>, ResultError> {
    let mut shp: Vec<&(String, String)> = params.iter().filter(|(k, _)| is_shp_key(k)).collect();
    shp.sort_by(|a, b| compare(&a.0, &b.0));
    let mut unique: Vec<(String, String)> = Vec::with_capacity(shp.len());
    for (key, value) in shp {
        match unique.last() {
            Some((k, seen)) if compare(k, key).is_eq() => {
                if seen != value {
                    return Err(ResultError::ConflictingField(shown_key(key)));
                }
            }
            _ => unique.push((key.clone(), value.clone())),
        }
    }
    Ok(unique)
}

/// A received field name as an error shows it: at most 40 characters, so that a made-up
/// name cannot make a long log line.
fn shown_key(key: &str) -> String {
    const SHOWN: usize = 40;
    match key.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &key[..end]),
        None => key.to_string(),
    }
}

/// The value of a field named `name` (any case), or of its legacy duplicate `legacy` when
/// `name` is absent. Repeats must agree.
fn field<'a>(
    params: &'a [(String, String)],
    name: &'static str,
    legacy: &'static str,
) -> Result<&'a str, ResultError> {
    for wanted in [name, legacy] {
        let mut found: Option<&str> = None;
        for (_, value) in params
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(wanted))
        {
            match found {
                Some(seen) if seen != value => {
                    return Err(ResultError::ConflictingField(wanted.to_string()))
                }
                _ => found = Some(value),
            }
        }
        if let Some(value) = found {
            return Ok(value);
        }
    }
    Err(ResultError::MissingField(name))
}

fn parse_inv_id(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().filter(|&n| n > 0)
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// `Shp_`, `SHP_`, `shp_` or any other case (spec §1).
fn is_shp_key(key: &str) -> bool {
    key.len() > 4 && key.as_bytes()[..4].eq_ignore_ascii_case(b"shp_")
}

/// The pairs sorted by key in byte order (stable, so equal keys keep their order).
fn sorted_shp(shp: &[(String, String)]) -> Vec<(String, String)> {
    let mut sorted = shp.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
}

fn append_shp(base: &mut String, sorted: &[(String, String)]) {
    for (key, value) in sorted {
        base.push(':');
        base.push_str(key);
        base.push('=');
        base.push_str(value);
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn percent_encode(s: &str, keep: impl Fn(u8) -> bool, space_as_plus: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if keep(b) {
            out.push(b as char);
        } else if b == b' ' && space_as_plus {
            out.push('+');
        } else {
            out.push('%');
            out.push(HEX_UPPER[usize::from(b >> 4)] as char);
            out.push(HEX_UPPER[usize::from(b & 0xF)] as char);
        }
    }
    out
}

/// PHP `urlencode`: keeps `A-Z a-z 0-9 - _ .`, space → `+`, the rest `%XX`. Used for the
/// receipt, because Robokassa's own examples build the signed receipt with it.
fn form_urlencode(s: &str) -> String {
    percent_encode(
        s,
        |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'),
        true,
    )
}

/// RFC 3986: keeps the unreserved `A-Z a-z 0-9 - _ . ~`, the rest `%XX` (space → `%20`).
fn query_encode(s: &str) -> String {
    percent_encode(
        s,
        |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn merchant(login: &str, p1: &str, p2: &str) -> Merchant {
        Merchant::new(login, Secret::new(p1), Secret::new(p2))
    }

    fn request(inv_id: i64, out_sum: &str) -> PaymentRequest {
        PaymentRequest {
            inv_id,
            out_sum: Amount::parse(out_sum).unwrap(),
            description: String::new(),
            culture: Lang::Ru,
            shp: Vec::new(),
            receipt: None,
            email: None,
        }
    }

    const VECTOR_13_JSON: &str = r#"{"items":[{"sum":"100.00","name":"Название товара 1","quantity":1,"tax":"vat10","payment_method":"full_payment","payment_object":"commodity"},{"sum":"450.00","name":"Название товара 2","quantity":3,"tax":"vat120","payment_method":"full_payment","payment_object":"excise","nomenclature_code":"04620034587217"}],"sno":"osn"}"#;
    const VECTOR_14_JSON: &str = r#"{"items":[{"sum":"100.00","name":"Название товара 1 (50%)","quantity":1,"tax":"vat10","payment_method":"full_payment","payment_object":"commodity"},{"sum":"450.00","name":"Название товара 2\"'><b>","quantity":3,"tax":"vat120","payment_method":"full_payment","payment_object":"excise","nomenclature_code":"04620034587217"}],"sno":"osn"}"#;

    /// Spec §8: the 24 third-party vectors, hashed exactly as printed.
    #[test]
    fn spec_vectors_all_24() {
        let v4 = r#"test-socionom.org:200.00:0:{"items":[{"name":"test","quantity":1,"sum":200,"payment_method":"full_payment","payment_object":"service","tax":"vat20"}]}:my_password1:shp_interface=link"#;
        let v5 = r#"my_merchant_login:100.00:42:USD:192.164.1.1:{"sno":"patent","items":[{"name":"Товар 1","quantity":1,"sum":100,"tax":"vat20","cost":100,"nomenclature_code":"1234567890","payment_method":"full_prepayment","payment_object":"service"}]}:my_password1:Shp_user_id=123"#;
        let v13 = format!("robo-demo:100.00:999:{VECTOR_13_JSON}:password#1");
        let v14 = format!("robo-demo:100.00:999:{VECTOR_14_JSON}:password#1");
        let table: Vec<(u32, HashAlg, &str, &str)> = vec![
            (1, HashAlg::Md5, "my_merchant_login:100.00:42:my_password1", "7642fdc174d0aabe022d992afd59f276"),
            (2, HashAlg::Md5, "my_merchant_login:100.00:0:my_password1", "cd9e54da801539e5bb4d6d371f6fef3f"),
            (3, HashAlg::Md5, "200.00:84:my_password2:shp_interface=link", "95286fdc8024655ceb9034539bac1180"),
            (4, HashAlg::Md5, v4, "888f7275e88d20ead0fc62cdf5b69f72"),
            (5, HashAlg::Md5, v5, "f8a27db4aa842194bf43b236ede4dd07"),
            (6, HashAlg::Md5, "robo-demo:100.00:1:password_1", "8ca1d1c1a6f9353bebe5b087697ba797"),
            (7, HashAlg::Md5, "robo-demo:10.00::USD:127.0.0.1:password#1", "9113fcc7a218deb0b5bc1c9c8e28c513"),
            (8, HashAlg::Md5, "robo-demo:10.00:1:password#1:shp_email=user@example.com:shp_user_id=1", "b98027823a17ee5be83c767f18315400"),
            (9, HashAlg::Md5, "10:1:password#2", "f38a17bc0db36343789587e4e5abf33c"),
            (10, HashAlg::Md5, "10::password#2", "56aad7334a473638781b4946998c113e"),
            (11, HashAlg::Sha256, "10:1:password#2", "6229bb8aa8f4e431fc43022f2847ae3296a9d7fe649b97cb65755abc90d15f0c"),
            (12, HashAlg::Md5, "10:1:password#2:shp_email=user@example.com:shp_user_id=1", "9c4b932169d6b683e2b76e31bae35aeb"),
            (13, HashAlg::Md5, &v13, "85a14f26ea37f92bef294e8d19d1a141"),
            (14, HashAlg::Md5, &v14, "7c6a95094fa5c3e5e2baf83c8817e8c0"),
            (15, HashAlg::Md5, "test_login:100.0:58:test_password:shpparam1=None:shpparam2=None", "0EC23BE40003640B35EC07F6615FFB57"),
            (16, HashAlg::Md5, "100:58:test_password2:shpparam1=Vasia:shpparam2=None", "B2111A06F6B7A1E090D38367BF7032D9"),
            (17, HashAlg::Md5, "100:58:test_password2:shpparam1=None:shpparam2=None", "877D3BAF8381F70E56638C3BC82580C5"),
            (18, HashAlg::Md5, "login:123.00:6544321:USD:pass1:Shp_name=John:Shp_surname=Smith", "864798f31e43ac88bea969e54608a54a"),
            (19, HashAlg::Md5, "150:123:pass2", "0109ea77984a645bf105f563abee3fe2"),
            (20, HashAlg::Md5, "shaggyone239:185.11:15:12345asdf", "55f2aee20767cde28e7fc49919cec969"),
            (21, HashAlg::Md5, "shaggyone239:2180.0:196:12345asdf", "adeedf2afbac5eca09b44898da3ef51a"),
            (22, HashAlg::Md5, "myMerchantLogin:1000:0:my_first_secret_password", "abd49d48d09a4ad6e373d3bfabc0051e"),
            (23, HashAlg::Md5, "myMerchantLogin:1000:0:my_first_secret_password:shp_customer_id=s8d92378:shp_product_id=a9902187-44f1-4b08-83d0-4944f36c2bfe", "f5ed8acce2768d062817733feaff8b23"),
            (24, HashAlg::Md5, "TEST", "033bd94b1168d7e4f0d644c3c95e35bf"),
        ];
        assert_eq!(table.len(), 24);
        for (n, alg, input, expected) in table {
            assert_eq!(
                alg.hex_digest(input),
                expected.to_ascii_lowercase(),
                "vector #{n}"
            );
        }
    }

    /// Spec §8, self-computed: the other algorithms on vector #1's string.
    #[test]
    fn spec_vectors_other_algorithms() {
        let input = "my_merchant_login:100.00:42:my_password1";
        let table = [
            (HashAlg::Sha1, "c702fb83c47677b201bd419d049258808c528410"),
            (HashAlg::Sha256, "fb4655dd6fd17b85688d3e8dfc128ab766479ebfd0f2d2e9c701d182382c393e"),
            (HashAlg::Sha384, "9643d6c579a879b361fb320e9fb0081d4ee23abcf2bb8ce964030abf7bccde42dbcf7c835eb622fff03c93949c5467b9"),
            (HashAlg::Sha512, "58e8e3064f7098f36af9770d963229c75d6da666b50b9f01ecbaf39444132592dfa4dc20f40cd80164044f0a678a9212f0d7e4677854d4dc297a71bf733f72e4"),
            (HashAlg::Ripemd160, "b9611413f371260f6049061c059e11114978c8fd"),
        ];
        for (alg, expected) in table {
            assert_eq!(alg.hex_digest(input), expected, "{alg}");
        }
    }

    /// The vectors that our own link builder can produce (two-decimal OutSum, `Shp_` keys).
    #[test]
    fn link_signature_reproduces_vectors() {
        let m = merchant("my_merchant_login", "my_password1", "x");
        assert_eq!(
            link_signature(&m, &request(42, "100")),
            "7642fdc174d0aabe022d992afd59f276"
        ); // #1
        assert_eq!(
            link_signature(&m, &request(0, "100.0")),
            "cd9e54da801539e5bb4d6d371f6fef3f"
        ); // #2

        let m = merchant("robo-demo", "password_1", "x");
        assert_eq!(
            link_signature(&m, &request(1, "100.00")),
            "8ca1d1c1a6f9353bebe5b087697ba797"
        ); // #6

        let m = merchant("robo-demo", "password#1", "x");
        let mut req = request(1, "10");
        // Given unsorted: the builder sorts by key.
        req.shp = pairs(&[("shp_user_id", "1"), ("shp_email", "user@example.com")]);
        assert_eq!(link_signature(&m, &req), "b98027823a17ee5be83c767f18315400"); // #8

        let m = merchant("shaggyone239", "12345asdf", "x");
        assert_eq!(
            link_signature(&m, &request(15, "185.11")),
            "55f2aee20767cde28e7fc49919cec969"
        ); // #20
    }

    /// The ResultURL vectors, end to end through `verify_result`.
    #[test]
    fn verify_result_reproduces_vectors() {
        // #3: dev-aces, lowercase shp_ prefix.
        let m = merchant("x", "x", "my_password2");
        let params = pairs(&[
            ("OutSum", "200.00"),
            ("InvId", "84"),
            ("shp_interface", "link"),
            ("SignatureValue", "95286fdc8024655ceb9034539bac1180"),
        ]);
        let notice = verify_result(&m, &params).unwrap();
        assert_eq!(notice.inv_id, 84);
        assert_eq!(notice.out_sum, Amount::from_rubles(200).unwrap());
        assert_eq!(notice.shp_value("shp_interface"), Some("link"));

        // #9, #11 (sha256), #12 (two Shp, received unsorted).
        let mut m = merchant("robo-demo", "password#1", "password#2");
        let base = pairs(&[("OutSum", "10"), ("InvId", "1")]);
        let with_sig = |extra: &[(&str, &str)]| {
            let mut p = base.clone();
            p.extend(pairs(extra));
            p
        };
        assert!(verify_result(
            &m,
            &with_sig(&[("SignatureValue", "f38a17bc0db36343789587e4e5abf33c")])
        )
        .is_ok());
        let p12 = with_sig(&[
            ("shp_user_id", "1"),
            ("shp_email", "user@example.com"),
            ("SignatureValue", "9c4b932169d6b683e2b76e31bae35aeb"),
        ]);
        let notice = verify_result(&m, &p12).unwrap();
        assert_eq!(
            notice.shp,
            pairs(&[("shp_email", "user@example.com"), ("shp_user_id", "1")])
        );
        m.hash = HashAlg::Sha256;
        let sig11 = "6229bb8aa8f4e431fc43022f2847ae3296a9d7fe649b97cb65755abc90d15f0c";
        assert!(verify_result(&m, &with_sig(&[("SignatureValue", sig11)])).is_ok());
        assert_eq!(verify_result(&m, &p12), Err(ResultError::BadSignature));

        // #10: an empty InvId is signed correctly but is no invoice of ours.
        let m = merchant("robo-demo", "password#1", "password#2");
        let p10 = pairs(&[
            ("OutSum", "10"),
            ("InvId", ""),
            ("SignatureValue", "56aad7334a473638781b4946998c113e"),
        ]);
        assert_eq!(verify_result(&m, &p10), Err(ResultError::BadInvId));
        assert_eq!(
            result_signature(&m, "10", "", &[]),
            "56aad7334a473638781b4946998c113e"
        );

        // #19: Lexty.
        let m = merchant("login", "pass1", "pass2");
        let p19 = pairs(&[
            ("OutSum", "150"),
            ("InvId", "123"),
            ("SignatureValue", "0109ea77984a645bf105f563abee3fe2"),
        ]);
        assert_eq!(
            verify_result(&m, &p19).unwrap().out_sum,
            Amount::from_kopecks(15_000)
        );
    }

    /// Spec §8's docs-style receipt vector, rebuilt from a `Receipt` value and put in a URL
    /// whose every part is derived by hand from spec §1 and §5.
    #[test]
    fn payment_url_with_receipt_matches_hand_derived_url() {
        let mut m = merchant("demo", "password_1", "password_2");
        m.test_mode = true;
        let receipt = Receipt {
            sno: None,
            items: vec![ReceiptItem {
                name: "product".into(),
                quantity: 1,
                sum: Amount::from_rubles(1).unwrap(),
                tax: "none".into(),
                payment_method: None,
                payment_object: None,
            }],
        };
        assert_eq!(
            receipt.to_json(),
            r#"{"items":[{"name":"product","quantity":1,"sum":1,"tax":"none"}]}"#
        );
        let once = "%7B%22items%22%3A%5B%7B%22name%22%3A%22product%22%2C%22quantity%22%3A1%2C%22sum%22%3A1%2C%22tax%22%3A%22none%22%7D%5D%7D";
        assert_eq!(receipt.encoded(), once);

        let req = PaymentRequest {
            inv_id: 12345,
            out_sum: Amount::parse("8.96").unwrap(),
            description: "Subscription 30 days".into(),
            culture: Lang::En,
            shp: pairs(&[("Shp_item", "1")]),
            receipt: Some(receipt),
            email: Some("user@example.com".into()),
        };
        assert_eq!(link_signature(&m, &req), "bf526842bd7fb148afb93bd1db91a3a3");
        let expected = "https://auth.robokassa.ru/Merchant/Index.aspx\
            ?MerchantLogin=demo\
            &OutSum=8.96\
            &InvId=12345\
            &Description=Subscription%2030%20days\
            &Culture=en\
            &Encoding=utf-8\
            &Email=user%40example.com\
            &Receipt=%257B%2522items%2522%253A%255B%257B%2522name%2522%253A%2522product%2522%252C%2522quantity%2522%253A1%252C%2522sum%2522%253A1%252C%2522tax%2522%253A%2522none%2522%257D%255D%257D\
            &IsTest=1\
            &Shp_item=1\
            &SignatureValue=bf526842bd7fb148afb93bd1db91a3a3";
        assert_eq!(payment_url(&m, &req), expected);
    }

    #[test]
    fn payment_url_live_without_receipt() {
        let m = merchant("groupcast", "pw1", "pw2");
        let req = PaymentRequest {
            inv_id: 1_700_000_000_123,
            out_sum: Amount::parse("490").unwrap(),
            description: "Подписка 30 дней".into(),
            culture: Lang::Ru,
            shp: pairs(&[("Shp_user", "42"), ("Shp_plan", "30")]),
            receipt: None,
            email: None,
        };
        let sig =
            HashAlg::Md5.hex_digest("groupcast:490.00:1700000000123:pw1:Shp_plan=30:Shp_user=42");
        assert_eq!(link_signature(&m, &req), sig);
        // П=D0 9F о=D0 BE д=D0 B4 п=D0 BF и=D0 B8 с=D1 81 к=D0 BA а=D0 B0 ...
        let expected = format!(
            "https://auth.robokassa.ru/Merchant/Index.aspx?MerchantLogin=groupcast&OutSum=490.00\
             &InvId=1700000000123\
             &Description=%D0%9F%D0%BE%D0%B4%D0%BF%D0%B8%D1%81%D0%BA%D0%B0%2030%20%D0%B4%D0%BD%D0%B5%D0%B9\
             &Culture=ru&Encoding=utf-8&Shp_plan=30&Shp_user=42&SignatureValue={sig}"
        );
        let url = payment_url(&m, &req);
        assert_eq!(url, expected);
        assert!(!url.contains("IsTest"));
        assert!(!url.contains("pw1") && !url.contains("pw2"));
    }

    #[test]
    fn payment_url_cuts_description_and_keeps_existing_query() {
        let mut m = merchant("shop", "a", "b");
        m.payment_url = "http://127.0.0.1:9/Merchant/Index.aspx?x=1".into();
        let mut req = request(7, "1");
        req.description = "я".repeat(150);
        let url = payment_url(&m, &req);
        assert!(url.starts_with("http://127.0.0.1:9/Merchant/Index.aspx?x=1&MerchantLogin=shop&"));
        assert_eq!(url.matches("%D1%8F").count(), MAX_DESCRIPTION_CHARS);
    }

    #[test]
    fn receipt_service_json_and_double_encoding() {
        let receipt = Receipt::service(
            "Подписка \"Groupcast\" 30 дней",
            Amount::parse("1290.5").unwrap(),
            "none",
            Some("usn_income"),
        );
        assert_eq!(
            receipt.to_json(),
            r#"{"sno":"usn_income","items":[{"name":"Подписка \"Groupcast\" 30 дней","quantity":1,"sum":1290.5,"tax":"none","payment_method":"full_prepayment","payment_object":"service"}]}"#
        );
        let once = receipt.encoded();
        // PHP urlencode: spaces become `+`, which the URL then carries as `%2B`.
        assert!(once.contains(
            "%D0%9F%D0%BE%D0%B4%D0%BF%D0%B8%D1%81%D0%BA%D0%B0+%5C%22Groupcast%5C%22+30+"
        ));
        assert!(once.contains("%22sum%22%3A1290.5%2C"));
        let m = merchant("shop", "p1", "p2");
        let mut req = request(3, "1290.50");
        req.receipt = Some(receipt);
        let url = payment_url(&m, &req);
        let twice = query_encode(&once);
        assert!(twice.contains("%255C%2522Groupcast%255C%2522%2B30%2B"));
        assert!(url.contains(&format!("&Receipt={twice}&")));
        let base = format!("shop:1290.50:3:{once}:p1");
        assert_eq!(link_signature(&m, &req), HashAlg::Md5.hex_digest(&base));

        let long = Receipt::service(&"x".repeat(200), Amount::ZERO, "none", None);
        assert_eq!(long.items[0].name.len(), MAX_RECEIPT_NAME_CHARS);
        assert!(long.to_json().starts_with(r#"{"items":[{"name":"xxx"#));
    }

    fn live_callback(m: &Merchant, out_sum: &str, shp: &[(&str, &str)]) -> Vec<(String, String)> {
        let shp = pairs(shp);
        let sig = result_signature(m, out_sum, "16799", &shp).to_ascii_uppercase();
        let mut p = pairs(&[
            ("out_summ", out_sum),
            ("OutSum", out_sum),
            ("inv_id", "16799"),
            ("InvId", "16799"),
            ("crc", &sig),
            ("SignatureValue", &sig),
            ("PaymentMethod", "BankCard"),
            ("IncSum", out_sum),
            ("IncCurrLabel", "BankCardPSR"),
            ("EMail", "buyer@example.com"),
            ("Fee", "2.690000"),
        ]);
        p.extend(shp);
        p
    }

    fn set(params: &mut [(String, String)], key: &str, value: &str) {
        for (k, v) in params.iter_mut() {
            if k == key {
                *v = value.to_string();
            }
        }
    }

    #[test]
    fn live_callback_with_six_decimals_uppercase_and_legacy_duplicates_is_accepted() {
        let m = merchant("shop", "live1", "live2");
        let params = live_callback(
            &m,
            "490.000000",
            &[("Shp_user", "610893809"), ("Shp_plan", "30")],
        );
        let sig = HashAlg::Md5
            .hex_digest("490.000000:16799:live2:Shp_plan=30:Shp_user=610893809")
            .to_ascii_uppercase();
        assert!(params.contains(&("SignatureValue".into(), sig.clone())));
        let notice = verify_result(&m, &params).unwrap();
        assert_eq!(
            notice,
            ResultNotice {
                inv_id: 16799,
                out_sum: Amount::parse("490.00").unwrap(),
                out_sum_raw: "490.000000".into(),
                shp: pairs(&[("Shp_plan", "30"), ("Shp_user", "610893809")]),
                is_test: false,
                signature: Secret::new(sig.clone()),
            }
        );
        assert_eq!(notice.signature.expose(), sig);
        assert_eq!(result_ok_body(notice.inv_id), "OK16799");
    }

    #[test]
    fn test_style_callback_and_key_case() {
        let m = merchant("shop", "test1", "test2");
        let shp = pairs(&[("SHP_plan", "30")]);
        let sig = result_signature(&m, "94.72", "5", &shp);
        let params = pairs(&[
            ("outsum", "94.72"),
            ("INVID", "5"),
            ("signaturevalue", &sig),
            ("Fee", "0.0"),
            ("EMail", ""),
            ("IsTest", "1"),
            ("SHP_plan", "30"),
        ]);
        let notice = verify_result(&m, &params).unwrap();
        assert!(notice.is_test);
        assert_eq!(notice.out_sum, Amount::from_kopecks(9472));
        assert_eq!(notice.shp_value("SHP_plan"), Some("30"));
    }

    #[test]
    fn legacy_fields_alone_are_enough() {
        let m = merchant("shop", "p1", "p2");
        let sig = result_signature(&m, "69.000000", "7", &[]);
        let params = pairs(&[("out_summ", "69.000000"), ("inv_id", "7"), ("crc", &sig)]);
        assert_eq!(verify_result(&m, &params).unwrap().inv_id, 7);
    }

    #[test]
    fn tampering_is_rejected() {
        let m = merchant("shop", "live1", "live2");
        let good = live_callback(&m, "490.000000", &[("Shp_plan", "30"), ("Shp_user", "42")]);
        assert!(verify_result(&m, &good).is_ok());

        type Tamper = Box<dyn Fn(&mut Vec<(String, String)>)>;
        let cases: Vec<(&str, Tamper)> = vec![
            (
                "OutSum",
                Box::new(|p| {
                    set(p, "OutSum", "1.000000");
                    set(p, "out_summ", "1.000000");
                }),
            ),
            // Same decimal, other string: the signature covers the received text.
            (
                "OutSum reformatted",
                Box::new(|p| set(p, "OutSum", "490.00")),
            ),
            (
                "InvId",
                Box::new(|p| {
                    set(p, "InvId", "16800");
                    set(p, "inv_id", "16800");
                }),
            ),
            ("Shp value", Box::new(|p| set(p, "Shp_user", "43"))),
            (
                "Shp values swapped",
                Box::new(|p| {
                    set(p, "Shp_plan", "42");
                    set(p, "Shp_user", "30");
                }),
            ),
            (
                "Shp removed",
                Box::new(|p| p.retain(|(k, _)| k != "Shp_user")),
            ),
            (
                "Shp added",
                Box::new(|p| p.push(("Shp_extra".into(), "1".into()))),
            ),
            (
                "signature one char",
                Box::new(|p| {
                    for (k, v) in p.iter_mut() {
                        if k == "SignatureValue" || k == "crc" {
                            let flipped = if v.starts_with('0') { "1" } else { "0" };
                            v.replace_range(0..1, flipped);
                        }
                    }
                }),
            ),
        ];
        for (what, tamper) in cases {
            let mut params = good.clone();
            tamper(&mut params);
            assert_eq!(
                verify_result(&m, &params),
                Err(ResultError::BadSignature),
                "{what}"
            );
        }

        // Signed over the Shp pairs in non-alphabetical order.
        let unsorted = HashAlg::Md5.hex_digest("490.000000:16799:live2:Shp_user=42:Shp_plan=30");
        let mut params = good.clone();
        set(&mut params, "SignatureValue", &unsorted);
        set(&mut params, "crc", &unsorted);
        assert_eq!(verify_result(&m, &params), Err(ResultError::BadSignature));

        // The order in which the pairs arrive does not matter.
        let mut params = good.clone();
        params.reverse();
        assert!(verify_result(&m, &params).is_ok());
    }

    #[test]
    fn signature_case_changes_are_accepted() {
        let m = merchant("shop", "live1", "live2");
        let mut params = live_callback(&m, "50.000000", &[("Shp_plan", "30")]);
        let lower = result_signature(&m, "50.000000", "16799", &pairs(&[("Shp_plan", "30")]));
        set(&mut params, "SignatureValue", &lower);
        assert!(verify_result(&m, &params).is_ok());
        let mixed: String = lower
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        set(&mut params, "SignatureValue", &mixed);
        assert!(verify_result(&m, &params).is_ok());
    }

    #[test]
    fn wrong_password_signatures_are_rejected() {
        let live = merchant("shop", "live1", "live2");
        let test = merchant("shop", "test1", "test2");
        // Signed with the test Password #2 (a test-mode callback) against a live config.
        let from_test = live_callback(&test, "490.00", &[("Shp_plan", "30")]);
        assert_eq!(
            verify_result(&live, &from_test),
            Err(ResultError::BadSignature)
        );
        // Signed with Password #1 (a SuccessURL signature replayed as a ResultURL).
        let shp = pairs(&[("Shp_plan", "30")]);
        let sig1 = success_signature(&live, "490.00", "16799", &shp);
        let mut params = pairs(&[
            ("OutSum", "490.00"),
            ("InvId", "16799"),
            ("SignatureValue", &sig1),
        ]);
        params.extend(shp);
        assert_eq!(
            verify_result(&live, &params),
            Err(ResultError::BadSignature)
        );
        // ... which is exactly what `verify_success` accepts.
        assert_eq!(verify_success(&live, &params).unwrap().inv_id, 16799);
        let from_result = live_callback(&live, "490.00", &[("Shp_plan", "30")]);
        assert_eq!(
            verify_success(&live, &from_result),
            Err(ResultError::BadSignature)
        );
    }

    #[test]
    fn malformed_callbacks_say_what_is_wrong_without_secrets() {
        let m = merchant("shop", "secret-one", "secret-two");
        let sig = result_signature(&m, "10", "1", &[]);
        let missing = pairs(&[("InvId", "1"), ("SignatureValue", &sig)]);
        assert_eq!(
            verify_result(&m, &missing),
            Err(ResultError::MissingField("OutSum"))
        );
        let missing = pairs(&[("OutSum", "10"), ("SignatureValue", &sig)]);
        assert_eq!(
            verify_result(&m, &missing),
            Err(ResultError::MissingField("InvId"))
        );
        let missing = pairs(&[("OutSum", "10"), ("InvId", "1")]);
        assert_eq!(
            verify_result(&m, &missing),
            Err(ResultError::MissingField("SignatureValue"))
        );

        let twice = pairs(&[
            ("OutSum", "10"),
            ("OutSum", "11"),
            ("InvId", "1"),
            ("SignatureValue", &sig),
        ]);
        assert_eq!(
            verify_result(&m, &twice),
            Err(ResultError::ConflictingField("OutSum".into()))
        );
        let same_twice = pairs(&[
            ("OutSum", "10"),
            ("OutSum", "10"),
            ("InvId", "1"),
            ("SignatureValue", &sig),
        ]);
        assert!(verify_result(&m, &same_twice).is_ok());
        let shp_twice = pairs(&[
            ("OutSum", "10"),
            ("InvId", "1"),
            ("Shp_a", "1"),
            ("Shp_a", "2"),
            ("SignatureValue", &sig),
        ]);
        assert_eq!(
            verify_result(&m, &shp_twice),
            Err(ResultError::ConflictingField("Shp_a".into()))
        );

        for (out_sum, inv_id, err) in [
            ("10", "0", ResultError::BadInvId),
            ("10", "-1", ResultError::BadInvId),
            ("10", "+1", ResultError::BadInvId),
            ("10", "abc", ResultError::BadInvId),
            ("10", "99999999999999999999", ResultError::BadInvId),
            ("-10", "1", ResultError::BadAmount),
            ("10,00", "1", ResultError::BadAmount),
            ("10.001", "1", ResultError::BadAmount),
        ] {
            let sig = result_signature(&m, out_sum, inv_id, &[]);
            let params = pairs(&[
                ("OutSum", out_sum),
                ("InvId", inv_id),
                ("SignatureValue", &sig),
            ]);
            assert_eq!(verify_result(&m, &params), Err(err), "{out_sum} / {inv_id}");
        }

        let received = pairs(&[
            ("OutSum", "10"),
            ("InvId", "1"),
            ("SignatureValue", "DEADBEEF00112233"),
        ]);
        let err = verify_result(&m, &received).unwrap_err();
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("secret"), "{text}");
            assert!(!text.to_ascii_lowercase().contains("deadbeef"), "{text}");
        }
    }

    /// The `Shp_*` check costs O(n log n) comparisons, counted: for 4096 fields in a scrambled
    /// order at most 2·n·log₂n (about 110 thousand), where the pairwise search it replaced
    /// made n²/2 (10 million).
    #[test]
    fn shp_fields_cost_n_log_n_comparisons() {
        let n: usize = 4096;
        // An odd multiplier modulo a power of two: a permutation of 0..n.
        let mut params: Vec<(String, String)> = (0..n)
            .map(|i| (format!("Shp_k{:05}", i * 2_654_435_761 % n), i.to_string()))
            .collect();
        // Repeats with the same value are one field.
        params.extend(params.clone().into_iter().take(n / 8));
        let mut comparisons = 0usize;
        let shp = callback_shp(&params, &mut |a: &str, b: &str| {
            comparisons += 1;
            a.cmp(b)
        })
        .unwrap();
        assert_eq!(shp.len(), n);
        assert!(shp.windows(2).all(|w| w[0].0 < w[1].0), "sorted by key");
        let fields = params.len();
        let bound = 2 * fields * fields.ilog2() as usize;
        assert!(
            comparisons <= bound,
            "{comparisons} comparisons for {fields} fields (bound {bound})"
        );

        // A conflict is found whatever the order, and named briefly.
        params.push(("Shp_k00007".into(), "other".into()));
        params.reverse();
        assert_eq!(
            callback_shp(&params, &mut str::cmp),
            Err(ResultError::ConflictingField("Shp_k00007".into()))
        );
        let long = format!("Shp_{}", "x".repeat(10_000));
        let params = pairs(&[(&long, "1"), (&long, "2")]);
        let Err(ResultError::ConflictingField(shown)) = callback_shp(&params, &mut str::cmp) else {
            panic!("a conflict");
        };
        assert_eq!(shown.chars().count(), 41, "{shown}");
    }

    #[test]
    fn the_notice_carries_the_signature_that_verified() {
        let m = merchant("shop", "p1", "p2");
        let sig = result_signature(&m, "10", "1", &[]).to_ascii_uppercase();
        let params = pairs(&[
            ("OutSum", "10"),
            ("InvId", "1"),
            ("SignatureValue", &format!(" {sig} ")),
            ("crc", "mailing"),
        ]);
        let notice = verify_result(&m, &params).unwrap();
        assert_eq!(notice.signature.expose(), sig);
        assert_eq!(
            format!("{notice:?}").matches(&sig).count(),
            0,
            "hidden in Debug"
        );
    }

    #[test]
    fn amounts_parse_format_and_compare_as_decimals() {
        let a = |s: &str| Amount::parse(s);
        assert_eq!(a("490.000000"), a("490.00"));
        assert_eq!(a("490"), a("490.00"));
        assert_eq!(a("490.000000").unwrap(), Amount::from_rubles(490).unwrap());
        assert_eq!(a("1290.5"), Some(Amount::from_kopecks(129_050)));
        assert_eq!(a("0.010000"), Some(Amount::from_kopecks(1)));
        assert_eq!(a("2.690000"), Some(Amount::from_kopecks(269)));
        assert_eq!(a("0.0"), Some(Amount::ZERO));
        assert_eq!(a("100.0"), Some(Amount::from_kopecks(10_000)));
        assert_ne!(a("490.01"), a("490.00"));
        for bad in [
            "",
            ".",
            "-1",
            "+1",
            "1.",
            ".5",
            "1.001",
            "1.0000001",
            "1,5",
            " 1",
            "1 ",
            "1e3",
            "1.2.3",
            "abc",
            "NaN",
            "99999999999999999999",
        ] {
            assert_eq!(a(bad), None, "{bad:?}");
        }
        assert_eq!(Amount::from_kopecks(129_050).to_string(), "1290.50");
        assert_eq!(Amount::from_kopecks(1).to_string(), "0.01");
        assert_eq!(Amount::from_rubles(490).unwrap().to_string(), "490.00");
        assert_eq!(Amount::from_kopecks(129_050).to_json_number(), "1290.5");
        assert_eq!(Amount::from_kopecks(129_055).to_json_number(), "1290.55");
        assert_eq!(Amount::from_kopecks(1).to_json_number(), "0.01");
        assert_eq!(Amount::from_kopecks(49_000).to_json_number(), "490");
        assert!(Amount::from_rubles(u64::MAX).is_none());
    }

    #[test]
    fn hash_alg_parse_and_names() {
        for alg in [
            HashAlg::Md5,
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
            HashAlg::Ripemd160,
        ] {
            assert_eq!(HashAlg::parse(alg.as_str()), Some(alg));
            assert_eq!(
                HashAlg::parse(&alg.as_str().to_ascii_uppercase()),
                Some(alg)
            );
        }
        assert_eq!(HashAlg::parse("RIPEMD160"), Some(HashAlg::Ripemd160));
        assert_eq!(HashAlg::parse("Sha256"), Some(HashAlg::Sha256));
        assert_eq!(HashAlg::parse("sha224"), None);
        assert_eq!(HashAlg::parse(""), None);
        assert_eq!(HashAlg::default(), HashAlg::Md5);
    }

    #[test]
    fn merchant_debug_hides_passwords() {
        let m = merchant("shop", "first-password-value", "second-password-value");
        let shown = format!("{m:?}");
        assert!(!shown.contains("first-password-value"), "{shown}");
        assert!(!shown.contains("second-password-value"), "{shown}");
        assert!(shown.contains("***") && shown.contains("shop"));
        assert_eq!(m.payment_url, DEFAULT_PAYMENT_URL);
        assert!(!m.test_mode);
    }

    #[test]
    fn encoders() {
        assert_eq!(form_urlencode("a b~*'()!/"), "a+b%7E%2A%27%28%29%21%2F");
        assert_eq!(query_encode("a b~+%"), "a%20b~%2B%25");
        assert!(is_shp_key("Shp_a") && is_shp_key("SHP_a") && is_shp_key("shp_a"));
        assert!(!is_shp_key("Shp_") && !is_shp_key("shpparam1") && !is_shp_key("Ш"));
    }
}
