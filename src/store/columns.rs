//! The member base as columns: every member's attributes and order digest in one file
//! beside the store (`rekindle.sled` -> `rekindle.columns`), as fixed-width arrays that
//! are mapped into memory (memmap2) and read in place (bytemuck), so a full-base
//! consumer (`profiles export`, `stats`, `predict fit`) reads numbers instead of decoding
//! a million records into heap objects.
//!
//! The file is a cache of the `M` records, like the member [`snapshot`](super::snapshot):
//! its header carries the store's id and the member generation it was written at
//! (`\0member-gen`, bumped before every write of member records), and
//! [`Store::member_columns`] rebuilds it from the records when it is missing, of another
//! store, of another generation, or damaged (a checksum or a bound that does not hold).
//! It is never read as empty or in part. A new file is written to a temporary name and
//! renamed into place, never changed in place, so a mapping another command holds stays
//! whole (a file truncated behind rekindle's back would fault a reader: do not edit it).
//! Contact fields (name, email, phone) stay in sled.
//!
//! Layout (little-endian; `N` members, `O` orders, `C`/`B`/`K` category, brand and sku
//! entries): a header (magic, format version, section count, store id, generation,
//! member count, the CRC-32 of the header and section table), the section table (per
//! section: offset, length, CRC-32), then the sections, each starting at a multiple of
//! 8 bytes:
//!
//! | section | type | length | what |
//! |---|---|---|---|
//! | ids | u64 offsets + bytes | N+1 | member ids (the `M` keys without their prefix), in key order |
//! | flags, gender | u8 | N | known, opted in to email and sms, has a birth year, has a signup time; 0 unknown, 1 female, 2 male |
//! | birth year, signup, city, tz | i32, i64, u32, u32 | N | city and tz index their dictionaries |
//! | order offsets | u64 | N+1 | each member's orders, in day order |
//! | day, amount, discounted, categories, brands, skus | i32, i64, u8, u16 x3 | O | the digest's orders; the counts say how many entries of each list are the order's |
//! | category offsets, name, spend | u64, u32, i64 | N+1, C, C | spend per category of each order in turn (likewise brands) |
//! | sku offsets, name | u64, u32 | N+1, K | the distinct skus of each order in turn |
//! | email hash, phone hash | u64 x2 | N | [`address_hash`] of each contact field (0: empty), so the planner knows who has an address, and whose is stopped, without reading sled |
//! | dictionaries | u64 offsets + bytes | | categories, brands, skus, cities, time zones: sorted, so index order is name order |

use super::model::{Gender, Member};
use super::{Store, StoreError};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 16] = b"rekindle-columns";
/// Bumped on every change of the layout; a file of another version is rebuilt.
const VERSION: u32 = 2;
/// Where the section table starts.
const TABLE: usize = 80;
/// Bytes per section table entry: offset, length (u64 each), CRC-32, padding.
const ENTRY: usize = 24;
const HEADER: usize = TABLE + SECTIONS * ENTRY;

/// The sections, in file order.
#[derive(Clone, Copy, Debug)]
enum S {
    IdOffsets,
    IdBytes,
    Flags,
    Gender,
    BirthYear,
    Signup,
    City,
    Tz,
    OrderOffsets,
    Day,
    Amount,
    Discounted,
    Categories,
    Brands,
    Skus,
    CategoryOffsets,
    CategoryName,
    CategorySpend,
    BrandOffsets,
    BrandName,
    BrandSpend,
    SkuOffsets,
    SkuName,
    EmailHash,
    PhoneHash,
    /// The five dictionaries, offsets then bytes each, in [`Dict`] order.
    Dicts,
}
const SECTIONS: usize = S::Dicts as usize + 2 * DICTS;

/// The dictionaries of names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dict {
    Category,
    Brand,
    Sku,
    City,
    Tz,
}
const DICTS: usize = 5;

/// Bits of the flags column.
pub mod flag {
    pub const KNOWN: u8 = 1;
    pub const EMAIL: u8 = 2;
    pub const SMS: u8 = 4;
    pub const BIRTH_YEAR: u8 = 8;
    pub const SIGNUP: u8 = 16;
}

/// A contact field's 64-bit fingerprint in the columns: 0 for an empty field, never 0
/// for another (FxHash, fixed across processes). Equal fingerprints only say "maybe the
/// same address": whoever acts on one compares the addresses themselves.
pub fn address_hash(address: &str) -> u64 {
    if address.is_empty() {
        return 0;
    }
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(address).max(1)
}

fn gender_code(g: Gender) -> u8 {
    match g {
        Gender::Unknown => 0,
        Gender::Female => 1,
        Gender::Male => 2,
    }
}

fn gender_of(code: u8) -> Gender {
    match code {
        1 => Gender::Female,
        2 => Gender::Male,
        _ => Gender::Unknown,
    }
}

/// The member base's file, mapped.
pub struct MemberColumns {
    map: memmap2::Mmap,
    /// A mapping of the file (else the anonymous copy [`Image::in_memory`] made).
    file_backed: bool,
    /// Byte range of each section.
    at: [(usize, usize); SECTIONS],
}

/// Typed views of every section of a [`MemberColumns`]; every bound between them was
/// checked when the file was opened, so a member's slices can be cut without checks
/// failing.
#[derive(Clone, Copy)]
pub struct Columns<'a> {
    id_offsets: &'a [u64],
    id_bytes: &'a [u8],
    flags: &'a [u8],
    gender: &'a [u8],
    birth_year: &'a [i32],
    signup: &'a [i64],
    city: &'a [u32],
    tz: &'a [u32],
    order_offsets: &'a [u64],
    day: &'a [i32],
    amount: &'a [i64],
    discounted: &'a [u8],
    categories: &'a [u16],
    brands: &'a [u16],
    skus: &'a [u16],
    category_offsets: &'a [u64],
    category_name: &'a [u32],
    category_spend: &'a [i64],
    brand_offsets: &'a [u64],
    brand_name: &'a [u32],
    brand_spend: &'a [i64],
    sku_offsets: &'a [u64],
    sku_name: &'a [u32],
    email_hash: &'a [u64],
    phone_hash: &'a [u64],
    dicts: [(&'a [u64], &'a [u8]); DICTS],
}

/// One member as the columns hold it: attributes, and its orders (in day order) with
/// each order's entries of spend per category and brand and its distinct skus, flat.
#[derive(Clone, Copy)]
pub struct MemberRow<'a> {
    pub flags: u8,
    pub gender: Gender,
    /// Meaningful only with [`flag::BIRTH_YEAR`].
    pub birth_year: i32,
    /// Meaningful only with [`flag::SIGNUP`].
    pub signup: i64,
    pub city: u32,
    pub tz: u32,
    pub days: &'a [i32],
    pub amounts: &'a [i64],
    /// 1 for an order with a discounted line.
    pub discounted: &'a [u8],
    pub categories: &'a [u16],
    pub brands: &'a [u16],
    pub skus: &'a [u16],
    /// Indexes into [`Dict::Category`], ascending by name.
    pub category_name: &'a [u32],
    pub category_spend: &'a [i64],
    pub brand_name: &'a [u32],
    pub brand_spend: &'a [i64],
    pub sku_name: &'a [u32],
    /// [`address_hash`] of the member's email and phone (0: none).
    pub email_hash: u64,
    pub phone_hash: u64,
}

impl MemberRow<'_> {
    pub fn birth_year(&self) -> Option<i32> {
        (self.flags & flag::BIRTH_YEAR != 0).then_some(self.birth_year)
    }
    pub fn signup(&self) -> Option<i64> {
        (self.flags & flag::SIGNUP != 0).then_some(self.signup)
    }
    pub fn has(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }
}

fn range(offsets: &[u64], i: usize) -> std::ops::Range<usize> {
    offsets[i] as usize..offsets[i + 1] as usize
}

impl<'a> Columns<'a> {
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Member `i`'s id, as stored (the key without its prefix).
    pub fn id(&self, i: usize) -> &'a [u8] {
        &self.id_bytes[range(self.id_offsets, i)]
    }

    pub fn row(&self, i: usize) -> MemberRow<'a> {
        let o = range(self.order_offsets, i);
        let c = range(self.category_offsets, i);
        let b = range(self.brand_offsets, i);
        MemberRow {
            flags: self.flags[i],
            gender: gender_of(self.gender[i]),
            birth_year: self.birth_year[i],
            signup: self.signup[i],
            city: self.city[i],
            tz: self.tz[i],
            days: &self.day[o.clone()],
            amounts: &self.amount[o.clone()],
            discounted: &self.discounted[o.clone()],
            categories: &self.categories[o.clone()],
            brands: &self.brands[o.clone()],
            skus: &self.skus[o],
            category_name: &self.category_name[c.clone()],
            category_spend: &self.category_spend[c],
            brand_name: &self.brand_name[b.clone()],
            brand_spend: &self.brand_spend[b],
            sku_name: &self.sku_name[range(self.sku_offsets, i)],
            email_hash: self.email_hash[i],
            phone_hash: self.phone_hash[i],
        }
    }

    /// Every member's [`address_hash`] of the email, or of the phone number.
    pub fn address_hashes(&self, phone: bool) -> &'a [u64] {
        if phone {
            self.phone_hash
        } else {
            self.email_hash
        }
    }

    /// Name `i` of a dictionary ("" past its end).
    pub fn name(&self, dict: Dict, i: u32) -> &'a str {
        let (offsets, bytes) = self.dicts[dict as usize];
        if i as usize + 1 >= offsets.len() {
            return "";
        }
        // every entry was checked to be UTF-8 when the file was opened
        std::str::from_utf8(&bytes[range(offsets, i as usize)]).unwrap_or("")
    }

    /// How many names a dictionary holds.
    pub fn names(&self, dict: Dict) -> usize {
        self.dicts[dict as usize].0.len().saturating_sub(1)
    }

    /// Every bound a reader relies on: lengths, offsets, per-order counts against the
    /// lists, dictionary indexes and UTF-8 names.
    fn check(&self, members: usize) -> Result<(), String> {
        let n = self.len();
        let per_member = [self.gender.len(), self.birth_year.len(), self.signup.len(), self.city.len(), self.tz.len(), self.email_hash.len(), self.phone_hash.len()];
        if n != members || per_member.iter().any(|&l| l != n) {
            return Err("member columns of different lengths".into());
        }
        let offsets = |name: &str, o: &[u64], len: usize, count: usize| -> Result<(), String> {
            let ok = o.len() == count + 1 && o[0] == 0 && o[count] == len as u64 && o.windows(2).all(|w| w[0] <= w[1]);
            if ok {
                Ok(())
            } else {
                Err(format!("the {name} offsets do not fit"))
            }
        };
        offsets("id", self.id_offsets, self.id_bytes.len(), n)?;
        let orders = self.day.len();
        if [self.amount.len(), self.discounted.len(), self.categories.len(), self.brands.len(), self.skus.len()].iter().any(|&l| l != orders) {
            return Err("order columns of different lengths".into());
        }
        offsets("order", self.order_offsets, orders, n)?;
        if self.category_name.len() != self.category_spend.len() || self.brand_name.len() != self.brand_spend.len() {
            return Err("spend columns of different lengths".into());
        }
        offsets("category", self.category_offsets, self.category_name.len(), n)?;
        offsets("brand", self.brand_offsets, self.brand_name.len(), n)?;
        offsets("sku", self.sku_offsets, self.sku_name.len(), n)?;
        for (d, &(o, bytes)) in self.dicts.iter().enumerate() {
            let count = o.len().checked_sub(1).ok_or("an empty dictionary offset list")?;
            offsets("dictionary", o, bytes.len(), count)?;
            if (0..count).any(|i| std::str::from_utf8(&bytes[range(o, i)]).is_err()) {
                return Err(format!("dictionary {d} holds a name that is not UTF-8"));
            }
        }
        let sum = |counts: &[u16]| counts.iter().map(|&c| c as usize).sum::<usize>();
        let counts_fit = (0..n).into_par_iter().with_min_len(4096).all(|i| {
            let o = range(self.order_offsets, i);
            sum(&self.categories[o.clone()]) == range(self.category_offsets, i).len()
                && sum(&self.brands[o.clone()]) == range(self.brand_offsets, i).len()
                && sum(&self.skus[o]) == range(self.sku_offsets, i).len()
        });
        if !counts_fit {
            return Err("an order's entry counts do not match its member's lists".into());
        }
        let within = |idx: &[u32], dict: Dict| idx.par_iter().with_min_len(1 << 16).all(|&i| (i as usize) < self.names(dict));
        let indexes_fit = within(self.category_name, Dict::Category)
            && within(self.brand_name, Dict::Brand)
            && within(self.sku_name, Dict::Sku)
            && within(self.city, Dict::City)
            && within(self.tz, Dict::Tz);
        if !indexes_fit {
            return Err("a name index past its dictionary".into());
        }
        Ok(())
    }
}

/// Bytes hashed between two releases of the pages read.
const CHECKSUM_CHUNK: usize = 8 << 20;

/// The checksum of a section of a mapped file, letting go of each chunk's pages once
/// hashed: the pass reads the whole file, and would otherwise hold all of it in the
/// process's resident memory at once (the peak of a one-shot command).
fn checksum_releasing(map: &memmap2::Mmap, (start, len): (usize, usize)) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    for at in (start..start + len).step_by(CHECKSUM_CHUNK) {
        let n = CHECKSUM_CHUNK.min(start + len - at);
        crc.update(&map[at..at + n]);
        // SAFETY: as in `MemberColumns::release`: a shared read-only mapping of a file
        // never written in place; dropped pages read back the same. (memmap2 widens the
        // range to whole pages: a neighbour's page dropped too is only read again.)
        if let Err(e) = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, at, n) } {
            tracing::debug!("madvise(DONTNEED) on the member columns: {e}");
        }
    }
    crc.finalize()
}

impl MemberColumns {
    /// How many members the file holds.
    pub fn len(&self) -> usize {
        self.id_offsets().len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Member `i`'s id (casting only the id sections, unlike [`MemberColumns::columns`]).
    pub fn id(&self, i: usize) -> &str {
        let offsets = self.id_offsets();
        let (start, _) = self.at[S::IdBytes as usize];
        // the ids were written from the store's keys, which are UTF-8
        std::str::from_utf8(&self.map[start + offsets[i] as usize..start + offsets[i + 1] as usize]).unwrap_or("")
    }

    /// The position of the member with this id (ids are sorted).
    pub fn position(&self, id: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.id(mid).cmp(id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    fn id_offsets(&self) -> &[u64] {
        let (start, len) = self.at[S::IdOffsets as usize];
        // `open` cast this section and checked its bounds
        bytemuck::cast_slice(&self.map[start..start + len])
    }

    /// Lets go of the pages a pass over the columns made resident (they stay in the
    /// kernel's page cache; the next read maps them again), so a process that keeps the
    /// base (the daemon) holds it in its resident memory only while it reads it.
    pub fn release(&self) {
        if !self.file_backed {
            return;
        }
        // SAFETY: a shared read-only mapping of a file rekindle never writes in place
        // (see `open`): dropping its pages loses nothing, a later read faults the same
        // bytes back in from the file. (On the anonymous copy it would zero them: hence
        // `file_backed`.)
        if let Err(e) = unsafe { self.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) } {
            tracing::debug!("madvise(DONTNEED) on the member columns: {e}");
        }
    }

    /// The typed views of the sections.
    pub fn columns(&self) -> Columns<'_> {
        // `open` cast every section with its type and checked the bounds: these casts
        // cannot fail on a file it accepted (a broken invariant if they do)
        Self::cast(&self.map, &self.at).expect("sections checked at open")
    }

    fn cast<'a>(map: &'a [u8], at: &[(usize, usize); SECTIONS]) -> Result<Columns<'a>, String> {
        fn typed<'a, T: bytemuck::Pod>(map: &'a [u8], at: &[(usize, usize); SECTIONS], s: usize) -> Result<&'a [T], String> {
            let (start, len) = at[s];
            bytemuck::try_cast_slice(&map[start..start + len]).map_err(|e| format!("section {s}: {e:?}"))
        }
        let dict = |d: usize| -> Result<(&'a [u64], &'a [u8]), String> {
            let s = S::Dicts as usize + 2 * d;
            Ok((typed(map, at, s)?, typed(map, at, s + 1)?))
        };
        Ok(Columns {
            id_offsets: typed(map, at, S::IdOffsets as usize)?,
            id_bytes: typed(map, at, S::IdBytes as usize)?,
            flags: typed(map, at, S::Flags as usize)?,
            gender: typed(map, at, S::Gender as usize)?,
            birth_year: typed(map, at, S::BirthYear as usize)?,
            signup: typed(map, at, S::Signup as usize)?,
            city: typed(map, at, S::City as usize)?,
            tz: typed(map, at, S::Tz as usize)?,
            order_offsets: typed(map, at, S::OrderOffsets as usize)?,
            day: typed(map, at, S::Day as usize)?,
            amount: typed(map, at, S::Amount as usize)?,
            discounted: typed(map, at, S::Discounted as usize)?,
            categories: typed(map, at, S::Categories as usize)?,
            brands: typed(map, at, S::Brands as usize)?,
            skus: typed(map, at, S::Skus as usize)?,
            category_offsets: typed(map, at, S::CategoryOffsets as usize)?,
            category_name: typed(map, at, S::CategoryName as usize)?,
            category_spend: typed(map, at, S::CategorySpend as usize)?,
            brand_offsets: typed(map, at, S::BrandOffsets as usize)?,
            brand_name: typed(map, at, S::BrandName as usize)?,
            brand_spend: typed(map, at, S::BrandSpend as usize)?,
            sku_offsets: typed(map, at, S::SkuOffsets as usize)?,
            sku_name: typed(map, at, S::SkuName as usize)?,
            email_hash: typed(map, at, S::EmailHash as usize)?,
            phone_hash: typed(map, at, S::PhoneHash as usize)?,
            dicts: [dict(0)?, dict(1)?, dict(2)?, dict(3)?, dict(4)?],
        })
    }

    /// Maps the file at `path` when it is whole, of store `id` and of `generation`.
    fn open(path: &Path, id: &str, generation: u64) -> Result<MemberColumns, Unusable> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Damaged(format!("cannot open it: {e}"))),
        };
        // SAFETY: rekindle never writes this file in place (a new one is renamed over
        // it), so the mapped bytes do not change while mapped; only a truncation by
        // another program could, which the module documentation warns against
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Unusable::Damaged(format!("cannot map it: {e}")))?;
        let damaged = |what: &str| Unusable::Damaged(what.to_string());
        if map.len() < HEADER || &map[..16] != MAGIC {
            return Err(damaged("no header"));
        }
        let u32_at = |i: usize| u32::from_le_bytes(map[i..i + 4].try_into().unwrap_or_default());
        let u64_at = |i: usize| u64::from_le_bytes(map[i..i + 8].try_into().unwrap_or_default());
        if u32_at(16) != VERSION || u32_at(20) as usize != SECTIONS {
            return Err(Unusable::Stale("another format version"));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&map[..72]);
        crc.update(&map[TABLE..HEADER]);
        if crc.finalize() != u32_at(72) {
            return Err(damaged("the header's checksum does not match"));
        }
        if &map[24..56] != id.as_bytes() {
            return Err(Unusable::Stale("of another store"));
        }
        if u64_at(56) != generation {
            return Err(Unusable::Stale("of an earlier member generation"));
        }
        let members = u64_at(64) as usize;
        let mut at = [(0usize, 0usize); SECTIONS];
        let mut sums = [0u32; SECTIONS];
        for (s, (slot, sum)) in at.iter_mut().zip(&mut sums).enumerate() {
            let e = TABLE + s * ENTRY;
            let (start, len) = (u64_at(e), u64_at(e + 8));
            if start % 8 != 0 || start < HEADER as u64 || start.checked_add(len).is_none_or(|end| end > map.len() as u64) {
                return Err(damaged("a section runs past the end of the file (truncated?)"));
            }
            *slot = (start as usize, len as usize);
            *sum = u32_at(e + 16);
        }
        let bad = (0..SECTIONS).into_par_iter().find_any(|&s| checksum_releasing(&map, at[s]) != sums[s]);
        if let Some(s) = bad {
            return Err(Unusable::Damaged(format!("section {s}'s checksum does not match")));
        }
        Self::cast(&map, &at).and_then(|c| c.check(members)).map_err(Unusable::Damaged)?;
        let columns = MemberColumns { map, at, file_backed: true };
        // the checks read every page: none of them needs to stay resident
        columns.release();
        Ok(columns)
    }
}

/// Why the file on disk is not used.
#[derive(Debug)]
enum Unusable {
    Missing,
    Stale(&'static str),
    Damaged(String),
}

impl Store {
    fn columns_path(&self) -> PathBuf {
        self.path.with_extension("columns")
    }

    /// The member base as columns: the file beside the store when it is whole and
    /// current, else written afresh from the member records first (in memory when the
    /// file cannot be written). Never a partial or an empty base for a store with
    /// members.
    pub fn member_columns(&self) -> Result<MemberColumns, StoreError> {
        let path = self.columns_path();
        let generation = self.member_generation()?;
        match MemberColumns::open(&path, &self.id, generation) {
            Ok(c) => {
                tracing::debug!(members = c.columns().len(), path = %path.display(), "member columns mapped");
                return Ok(c);
            }
            Err(Unusable::Missing) => tracing::debug!(path = %path.display(), "writing the member columns"),
            Err(Unusable::Stale(why)) => tracing::debug!(path = %path.display(), "rewriting the member columns: {why}"),
            Err(Unusable::Damaged(why)) => tracing::warn!(path = %path.display(), "rewriting the damaged member columns: {why}"),
        }
        let mut b = Builder::default();
        self.member_chunks(|chunk| {
            let decoded: Vec<Member> = chunk.par_iter().map(|(k, v)| super::decode(k, v)).collect::<Result<_, _>>()?;
            for ((k, _), m) in chunk.iter().zip(&decoded) {
                b.push(&k[1..], m);
            }
            Ok(())
        })?;
        let sections = b.finish();
        let image = Image::new(&sections, &self.id, generation);
        match image.write_file(&path) {
            Ok(()) => match MemberColumns::open(&path, &self.id, generation) {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(path = %path.display(), "the member columns just written do not read back ({e:?}); keeping them in memory"),
            },
            Err(e) => tracing::warn!(path = %path.display(), "cannot write the member columns (full-base commands rebuild them each time): {e}"),
        }
        image.in_memory().map_err(StoreError::Spill)
    }
}

/// A dictionary being built: names in first-seen order.
#[derive(Default)]
struct Interner {
    index: FxHashMap<crate::domain::Text, u32>,
    names: Vec<crate::domain::Text>,
}

impl Interner {
    fn get(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.index.insert(name.into(), i);
        self.names.push(name.into());
        i
    }

    /// Sorts the names; returns the new index of each old one.
    fn sort(&mut self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.names.len() as u32).collect();
        order.par_sort_unstable_by(|&a, &b| self.names[a as usize].cmp(&self.names[b as usize]));
        let mut new_of = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_of[old as usize] = new as u32;
        }
        self.names = order.iter().map(|&i| std::mem::take(&mut self.names[i as usize])).collect();
        new_of
    }
}

/// The columns being built, member after member.
#[derive(Default)]
struct Builder {
    id_offsets: Vec<u64>,
    id_bytes: Vec<u8>,
    flags: Vec<u8>,
    gender: Vec<u8>,
    birth_year: Vec<i32>,
    signup: Vec<i64>,
    city: Vec<u32>,
    tz: Vec<u32>,
    order_offsets: Vec<u64>,
    day: Vec<i32>,
    amount: Vec<i64>,
    discounted: Vec<u8>,
    categories: Vec<u16>,
    brands: Vec<u16>,
    skus: Vec<u16>,
    category_offsets: Vec<u64>,
    category_name: Vec<u32>,
    category_spend: Vec<i64>,
    brand_offsets: Vec<u64>,
    brand_name: Vec<u32>,
    brand_spend: Vec<i64>,
    sku_offsets: Vec<u64>,
    sku_name: Vec<u32>,
    email_hash: Vec<u64>,
    phone_hash: Vec<u64>,
    dicts: [Interner; DICTS],
    /// The member's names mapped to the dictionary's, reused.
    local: Vec<u32>,
}

impl Builder {
    fn push(&mut self, id: &[u8], m: &Member) {
        if self.id_offsets.is_empty() {
            for o in [&mut self.id_offsets, &mut self.order_offsets, &mut self.category_offsets, &mut self.brand_offsets, &mut self.sku_offsets] {
                o.push(0);
            }
        }
        self.id_bytes.extend_from_slice(id);
        self.id_offsets.push(self.id_bytes.len() as u64);
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        self.flags.push(
            bit(m.known, flag::KNOWN)
                | bit(m.opted_in_email, flag::EMAIL)
                | bit(m.opted_in_sms, flag::SMS)
                | bit(m.birth_year.is_some(), flag::BIRTH_YEAR)
                | bit(m.signup_ts.is_some(), flag::SIGNUP),
        );
        self.gender.push(gender_code(m.gender));
        self.birth_year.push(m.birth_year.unwrap_or(0));
        self.signup.push(m.signup_ts.unwrap_or(0));
        let city = self.dicts[Dict::City as usize].get(&m.city);
        self.city.push(city);
        let tz = self.dicts[Dict::Tz as usize].get(&m.tz);
        self.tz.push(tz);
        self.email_hash.push(address_hash(&m.email));
        self.phone_hash.push(address_hash(&m.phone));
        let d = &m.digest;
        for o in &d.orders {
            self.day.push(o.day);
            self.amount.push(o.amount);
            self.discounted.push(u8::from(o.discounted));
            self.categories.push(o.categories);
            self.brands.push(o.brands);
            self.skus.push(o.skus);
        }
        self.order_offsets.push(self.day.len() as u64);
        let mut local = std::mem::take(&mut self.local);
        let mut map = |dict: Dict, names: &[crate::domain::Text], local: &mut Vec<u32>| {
            local.clear();
            local.extend(names.iter().map(|n| self.dicts[dict as usize].get(n)));
        };
        // an index past the member's own names (only a damaged record has one) maps to
        // u32::MAX, which the check at open refuses: the file is then never used
        let global = |local: &[u32], i: u32| local.get(i as usize).copied().unwrap_or(u32::MAX);
        map(Dict::Category, &d.category_names, &mut local);
        for &(i, spend) in &d.category_spend {
            self.category_name.push(global(&local, i));
            self.category_spend.push(spend);
        }
        self.category_offsets.push(self.category_name.len() as u64);
        map(Dict::Brand, &d.brand_names, &mut local);
        for &(i, spend) in &d.brand_spend {
            self.brand_name.push(global(&local, i));
            self.brand_spend.push(spend);
        }
        self.brand_offsets.push(self.brand_name.len() as u64);
        map(Dict::Sku, &d.sku_names, &mut local);
        self.sku_name.extend(d.order_skus.iter().map(|&i| global(&local, i)));
        self.sku_offsets.push(self.sku_name.len() as u64);
        self.local = local;
    }

    /// Sorts the dictionaries (remapping the indexes) and lays out every section.
    fn finish(mut self) -> Vec<Vec<u8>> {
        if self.id_offsets.is_empty() {
            for o in [&mut self.id_offsets, &mut self.order_offsets, &mut self.category_offsets, &mut self.brand_offsets, &mut self.sku_offsets] {
                o.push(0);
            }
        }
        let remap = |column: &mut Vec<u32>, new_of: &[u32]| {
            column.par_iter_mut().with_min_len(1 << 14).for_each(|i| {
                if let Some(&n) = new_of.get(*i as usize) {
                    *i = n;
                }
            })
        };
        let new_of: Vec<Vec<u32>> = self.dicts.iter_mut().map(Interner::sort).collect();
        remap(&mut self.category_name, &new_of[Dict::Category as usize]);
        remap(&mut self.brand_name, &new_of[Dict::Brand as usize]);
        remap(&mut self.sku_name, &new_of[Dict::Sku as usize]);
        remap(&mut self.city, &new_of[Dict::City as usize]);
        remap(&mut self.tz, &new_of[Dict::Tz as usize]);
        fn bytes<T: bytemuck::Pod>(v: Vec<T>) -> Vec<u8> {
            bytemuck::cast_slice(&v).to_vec()
        }
        let mut out = vec![
            bytes(self.id_offsets),
            self.id_bytes,
            self.flags,
            self.gender,
            bytes(self.birth_year),
            bytes(self.signup),
            bytes(self.city),
            bytes(self.tz),
            bytes(self.order_offsets),
            bytes(self.day),
            bytes(self.amount),
            self.discounted,
            bytes(self.categories),
            bytes(self.brands),
            bytes(self.skus),
            bytes(self.category_offsets),
            bytes(self.category_name),
            bytes(self.category_spend),
            bytes(self.brand_offsets),
            bytes(self.brand_name),
            bytes(self.brand_spend),
            bytes(self.sku_offsets),
            bytes(self.sku_name),
            bytes(self.email_hash),
            bytes(self.phone_hash),
        ];
        for d in &self.dicts {
            let mut offsets = Vec::with_capacity(d.names.len() + 1);
            let mut text = Vec::new();
            offsets.push(0u64);
            for n in &d.names {
                text.extend_from_slice(n.as_bytes());
                offsets.push(text.len() as u64);
            }
            out.push(bytes(offsets));
            out.push(text);
        }
        debug_assert_eq!(out.len(), SECTIONS);
        out
    }
}

/// A file's bytes laid out: the header with its table, and the sections at their offsets.
struct Image<'a> {
    header: Vec<u8>,
    sections: &'a [Vec<u8>],
    starts: Vec<usize>,
    len: usize,
}

impl<'a> Image<'a> {
    fn new(sections: &'a [Vec<u8>], id: &str, generation: u64) -> Image<'a> {
        let mut starts = Vec::with_capacity(sections.len());
        let mut at = HEADER;
        for s in sections {
            starts.push(at);
            at = (at + s.len()).next_multiple_of(8);
        }
        let sums: Vec<u32> = sections.par_iter().map(|s| crc32fast::hash(s)).collect();
        let members = (sections[S::Flags as usize].len()) as u64;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(SECTIONS as u32).to_le_bytes());
        let mut id_field = [0u8; 32];
        let n = id.len().min(32);
        id_field[..n].copy_from_slice(&id.as_bytes()[..n]);
        header.extend_from_slice(&id_field);
        header.extend_from_slice(&generation.to_le_bytes());
        header.extend_from_slice(&members.to_le_bytes());
        header.extend_from_slice(&[0u8; 8]); // the checksum, below
        for ((s, &start), sum) in sections.iter().zip(&starts).zip(sums) {
            header.extend_from_slice(&(start as u64).to_le_bytes());
            header.extend_from_slice(&(s.len() as u64).to_le_bytes());
            header.extend_from_slice(&sum.to_le_bytes());
            header.extend_from_slice(&[0u8; 4]);
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[..72]);
        crc.update(&header[TABLE..]);
        header[72..76].copy_from_slice(&crc.finalize().to_le_bytes());
        Image { header, sections, starts, len: at }
    }

    fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.header)?;
        let mut at = HEADER;
        for (s, &start) in self.sections.iter().zip(&self.starts) {
            out.write_all(&[0u8; 8][..start - at])?;
            out.write_all(s)?;
            at = start + s.len();
        }
        out.write_all(&[0u8; 8][..self.len - at])
    }

    /// Writes the file to a temporary name beside `path` and renames it into place.
    fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new().prefix(".rekindle-columns.").tempfile_in(dir)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
        self.write_to(&mut w)?;
        let tmp = w.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The same bytes in an anonymous mapping, for when no file can be written.
    fn in_memory(&self) -> std::io::Result<MemberColumns> {
        let mut map = memmap2::MmapMut::map_anon(self.len.max(1))?;
        self.write_to(&mut &mut map[..])?;
        let map = map.make_read_only()?;
        let mut at = [(0usize, 0usize); SECTIONS];
        for (slot, (s, &start)) in at.iter_mut().zip(self.sections.iter().zip(&self.starts)) {
            *slot = (start, s.len());
        }
        Ok(MemberColumns { map, at, file_backed: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{OrderHistory, OrderLine};

    fn line(order: &str, sku: &str, day: i64, price: i64, category: &str, brand: &str, discount_ppm: u32) -> OrderLine {
        OrderLine {
            order_id: order.into(),
            sku: sku.into(),
            ts: day * 86_400 + 3600,
            category: category.into(),
            brand: brand.into(),
            unit_price: price,
            qty: 1,
            discount_ppm,
        }
    }

    /// Writes members through the store's own path (the generation bumped first).
    fn write(store: &Store, members: &[(String, Member)]) {
        store.bump_member_generation().unwrap();
        for (id, m) in members {
            store.db.insert(crate::store::key(crate::store::MEMBER, id), crate::store::encode(m)).unwrap();
        }
    }

    fn sample(n: usize) -> Vec<(String, Member)> {
        (0..n)
            .map(|i| {
                let lines: Vec<OrderLine> = (0..i % 4)
                    .map(|k| line(&format!("o{i}-{k}"), &format!("sku-{}", (i + k) % 7), 20_000 + (i * 3 + k * 40) as i64, 100 + k as i64, ["tea", "", "rice"][k % 3], ["b1", "b2"][i % 2], if k == 1 { 100_000 } else { 0 }))
                    .collect();
                let m = Member {
                    name: "not in the columns".into(),
                    email: if i % 4 == 0 { String::new() } else { format!("m{i}@example.com") },
                    phone: if i % 5 == 0 { String::new() } else { format!("+86 138 0000 {i:04}") },
                    gender: [Gender::Unknown, Gender::Female, Gender::Male][i % 3],
                    birth_year: (i % 5 != 0).then_some(1960 + i as i32 % 40),
                    city: ["上海", "", "北京"][i % 3].into(),
                    signup_ts: (i % 2 == 0).then_some(1_700_000_000 + i as i64),
                    opted_in_email: i % 2 == 0,
                    opted_in_sms: i % 3 == 0,
                    tz: ["", "Asia/Tokyo"][i % 2].into(),
                    known: i % 11 != 0,
                    digest: OrderHistory { lines }.digest(),
                };
                (format!("m{i:05}"), m)
            })
            .collect()
    }

    /// Member `i` read back from the columns as a `Member` (without contact fields).
    fn member_of(c: &Columns<'_>, i: usize) -> Member {
        let r = c.row(i);
        // the dictionaries are global: the member's own names in first-listed order
        let own = |names: &[u32]| {
            let mut list: Vec<u32> = Vec::new();
            let local: Vec<u32> = names
                .iter()
                .map(|n| match list.iter().position(|x| x == n) {
                    Some(p) => p as u32,
                    None => {
                        list.push(*n);
                        list.len() as u32 - 1
                    }
                })
                .collect();
            (list, local)
        };
        let (cats, cat_local) = own(r.category_name);
        let (brands, brand_local) = own(r.brand_name);
        let (skus, sku_local) = own(r.sku_name);
        let names = |d: Dict, l: &[u32]| l.iter().map(|&i| crate::domain::Text::from(c.name(d, i))).collect::<Vec<_>>();
        Member {
            gender: r.gender,
            birth_year: r.birth_year(),
            city: c.name(Dict::City, r.city).into(),
            signup_ts: r.signup(),
            opted_in_email: r.has(flag::EMAIL),
            opted_in_sms: r.has(flag::SMS),
            tz: c.name(Dict::Tz, r.tz).into(),
            known: r.has(flag::KNOWN),
            digest: crate::store::model::Digest {
                orders: (0..r.days.len())
                    .map(|o| crate::store::model::OrderDigest {
                        day: r.days[o],
                        amount: r.amounts[o],
                        discounted: r.discounted[o] != 0,
                        categories: r.categories[o],
                        brands: r.brands[o],
                        skus: r.skus[o],
                    })
                    .collect(),
                category_spend: cat_local.into_iter().zip(r.category_spend.iter().copied()).collect(),
                brand_spend: brand_local.into_iter().zip(r.brand_spend.iter().copied()).collect(),
                category_names: names(Dict::Category, &cats),
                brand_names: names(Dict::Brand, &brands),
                order_skus: sku_local,
                sku_names: names(Dict::Sku, &skus),
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_columns_hold_every_member_as_stored_until_members_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sled"), 16).unwrap();
        let members = sample(300);
        write(&store, &members);
        let cols = store.member_columns().unwrap();
        let c = cols.columns();
        assert_eq!(c.len(), 300);
        for (i, (id, m)) in members.iter().enumerate() {
            assert_eq!(c.id(i), id.as_bytes());
            assert_eq!((cols.id(i), cols.position(id)), (id.as_str(), Some(i)));
            let expect = Member { name: Default::default(), email: Default::default(), phone: Default::default(), ..m.clone() };
            assert_eq!(member_of(&c, i), expect, "{id}");
            assert_eq!((c.row(i).email_hash, c.row(i).phone_hash), (address_hash(&m.email), address_hash(&m.phone)), "{id}");
        }
        assert_eq!(cols.len(), 300);
        for absent in ["", "\u{0}", "zzzz", "m-0000-x"] {
            assert_eq!(cols.position(absent), None, "{absent:?}");
        }
        let names: Vec<&str> = (0..c.names(Dict::Category) as u32).map(|i| c.name(Dict::Category, i)).collect();
        assert_eq!(names, ["rice", "tea"], "sorted: index order is name order");
        assert!(store.columns_path().exists());
        // read from the file now: sled changed behind its back is not seen...
        store.db.insert(crate::store::key(crate::store::MEMBER, "zz"), crate::store::encode(&Member::default())).unwrap();
        assert_eq!(store.member_columns().unwrap().columns().len(), 300);
        // ...a change through the store's paths is
        write(&store, &[("m00001".into(), Member { city: "广州".into(), ..Default::default() })]);
        let cols = store.member_columns().unwrap();
        let c = cols.columns();
        assert_eq!(c.len(), 301);
        assert_eq!(c.name(Dict::City, c.row(1).city), "广州");
        assert!(c.row(1).days.is_empty());
    }

    #[test]
    fn released_pages_read_back_the_same_and_the_copy_in_memory_is_never_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sled"), 16).unwrap();
        let members = sample(300);
        write(&store, &members);
        let cols = store.member_columns().unwrap();
        let read = |c: &MemberColumns| (0..300).map(|i| member_of(&c.columns(), i)).collect::<Vec<_>>();
        let before = read(&cols);
        cols.release();
        assert_eq!(read(&cols), before);
        // the anonymous copy (when the file cannot be written): releasing it would zero it
        let mut b = Builder::default();
        for (id, m) in &members {
            b.push(id.as_bytes(), m);
        }
        let sections = b.finish();
        let copy = Image::new(&sections, &store.id, 1).in_memory().unwrap();
        copy.release();
        assert_eq!(read(&copy), before);
    }

    #[test]
    fn a_damaged_or_foreign_file_is_rebuilt_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sled"), 16).unwrap();
        write(&store, &sample(500));
        let path = store.columns_path();
        let whole = { store.member_columns().unwrap().map.to_vec() };
        let reread = |store: &Store| {
            let c = store.member_columns().unwrap();
            assert_eq!(c.columns().len(), 500);
            assert_eq!(std::fs::read(&path).unwrap(), whole, "rewritten whole");
        };
        // truncated; one byte flipped in a section, in the header; emptied
        for damage in [
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 9)) as Box<dyn Fn(&mut Vec<u8>)>,
            Box::new(|b: &mut Vec<u8>| b[HEADER] ^= 1),
            Box::new(|b: &mut Vec<u8>| b[60] ^= 1),
            Box::new(|b: &mut Vec<u8>| b.clear()),
        ] {
            let mut bytes = whole.clone();
            damage(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();
            assert!(matches!(MemberColumns::open(&path, &store.id, store.member_generation().unwrap()), Err(Unusable::Damaged(_))));
            reread(&store);
        }
        // a file of another store at the same path
        let other = tempfile::tempdir().unwrap();
        let other = Store::open(&other.path().join("s.sled"), 16).unwrap();
        write(&other, &sample(3));
        std::fs::write(&path, other.member_columns().unwrap().map.as_ref()).unwrap();
        reread(&store);
    }

    #[test]
    fn an_empty_store_has_empty_columns() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sled"), 16).unwrap();
        let c = store.member_columns().unwrap();
        assert!(c.columns().is_empty());
        assert_eq!(c.columns().names(Dict::Sku), 0);
    }
}
