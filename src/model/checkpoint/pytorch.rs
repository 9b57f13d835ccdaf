//! Reading PyTorch `torch.save` checkpoints (the zip format) without Python.
//!
//! A `.pth` file is a zip holding `<name>/data.pkl`, a pickle of the saved object, and
//! one `<name>/data/<key>` entry of raw little-endian bytes per tensor storage. Pickles
//! can run arbitrary code, so this module never executes one: a small pickle machine
//! interprets only the opcodes a state dict is written with, and knows only the globals
//! it names, each interpreted here rather than called:
//!
//! - `collections.OrderedDict`: the type of `state_dict()` and of a tensor's backward hooks;
//! - `torch._utils._rebuild_tensor_v2` and `_rebuild_tensor`: a tensor as a view of a storage;
//! - `torch._utils._rebuild_parameter`: a state dict saved with `keep_vars=True`;
//! - `torch.FloatStorage`, `HalfStorage`, `BFloat16Storage`, `DoubleStorage` (read as f32)
//!   and `LongStorage` (the int64 buffers such as BatchNorm's `num_batches_tracked`,
//!   skipped like every other non-float entry).
//!
//! Any other global or opcode is refused where it appears, and nothing is ever called.
//! The saved object is a state dict, or a dict holding one under `model` (the MAE
//! release) or `state_dict`. Sizes are checked against the file's: no storage may
//! outgrow it, and the tensors read may hold at most twice as many elements as it has
//! bytes (more than any genuine file, even with tied weights).

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

/// A tensor's name, shape and values.
pub(crate) type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The float tensors of a `torch.save` state dict, in the order the file stores them.
pub(crate) fn read(path: &Path) -> Result<Vec<NamedTensor>> {
    let file = crate::files::open(path)?;
    let file_len = file
        .metadata()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .len();
    let mut zip = zip::ZipArchive::new(file).with_context(|| {
        format!(
            "{}: not a readable zip archive (torch.save writes zips since PyTorch 1.6; the \
             older format is not supported)",
            path.display()
        )
    })?;
    let prefix = archive_prefix(&zip)
        .with_context(|| format!("{}: not a torch.save checkpoint", path.display()))?;
    let fail = |e: anyhow::Error| anyhow!("{}: {e:#}", path.display());
    check_byte_order(&mut zip, &prefix).map_err(fail)?;
    let pickle = read_entry(&mut zip, &format!("{prefix}data.pkl"), file_len).map_err(fail)?;
    let views = state_dict(&pickle, file_len).map_err(fail)?;
    let mut out = Vec::with_capacity(views.len());
    for (name, view) in views {
        let needed = view.storage_numel * view.dtype.width();
        let entry = format!("{prefix}data/{}", view.key);
        let bytes = read_entry(&mut zip, &entry, needed as u64)
            .map_err(|e| fail(e.context(format!("tensor {name}"))))?;
        if bytes.len() < needed {
            return Err(fail(anyhow!(
                "tensor {name}: storage {entry} holds {} bytes, its tensor needs {needed}",
                bytes.len()
            )));
        }
        let values = view.gather(&bytes);
        out.push((name, view.size, values));
    }
    Ok(out)
}

/// The folder holding `data.pkl`: `archive/` or, in recent PyTorch, the file's stem.
fn archive_prefix(zip: &zip::ZipArchive<std::fs::File>) -> Result<String> {
    for name in zip.file_names() {
        let name = name.context("unreadable entry name")?;
        if let Some(folder) = name.strip_suffix("data.pkl") {
            if folder.ends_with('/') && folder.matches('/').count() == 1 {
                return Ok(folder.to_string());
            }
        }
    }
    bail!("the zip holds no <name>/data.pkl")
}

/// Refuses `byteorder` other than `little` (files without one are little-endian).
fn check_byte_order(zip: &mut zip::ZipArchive<std::fs::File>, prefix: &str) -> Result<()> {
    let name = format!("{prefix}byteorder");
    if zip.index_for_name(&name).is_none() {
        return Ok(());
    }
    match read_entry(zip, &name, 16)?.as_slice() {
        b"little" => Ok(()),
        b"big" => bail!("big-endian checkpoints are not supported"),
        other => bail!("unknown byte order {:?}", String::from_utf8_lossy(other)),
    }
}

/// Up to `limit` bytes of one entry.
fn read_entry(zip: &mut zip::ZipArchive<std::fs::File>, name: &str, limit: u64) -> Result<Vec<u8>> {
    let entry = zip
        .by_name(name)
        .with_context(|| format!("missing entry {name}"))?;
    let mut bytes = Vec::new();
    entry
        .take(limit)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read entry {name}"))?;
    Ok(bytes)
}

/// Element types of the float storages this module reads.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DType {
    F32,
    F16,
    BF16,
    F64,
}

impl DType {
    fn width(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// A tensor as a strided view of a storage, checked to lie within it.
#[derive(Clone, Debug)]
struct View {
    dtype: DType,
    key: Rc<str>,
    storage_numel: usize,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

impl View {
    /// Refuses views reaching past their storage, and views or storages larger than
    /// `limit` (elements, bytes): in a genuine file neither outgrows the file.
    fn check(&self, limit: u64) -> Result<()> {
        let (key, size, stride) = (&self.key, &self.size, &self.stride);
        if size.len() != stride.len() {
            bail!(
                "a tensor has {} sizes but {} strides",
                size.len(),
                stride.len()
            );
        }
        let bytes = self.storage_numel.checked_mul(self.dtype.width());
        if bytes.is_none_or(|b| b as u64 > limit) {
            bail!(
                "storage {key} claims {} elements, more than the file holds",
                self.storage_numel
            );
        }
        let numel = size.iter().try_fold(1usize, |n, &s| n.checked_mul(s));
        match numel {
            Some(0) => return Ok(()),
            Some(n) if n as u64 <= limit => {}
            _ => bail!("a tensor of shape {size:?} is larger than the file"),
        }
        let last = size
            .iter()
            .zip(stride)
            .try_fold(self.offset, |at, (&n, &s)| {
                (n - 1).checked_mul(s).and_then(|step| at.checked_add(step))
            });
        if last.is_none_or(|last| last >= self.storage_numel) {
            bail!(
                "a tensor of shape {size:?}, strides {stride:?} and offset {} reaches past the \
                 {} elements of its storage {key}",
                self.offset,
                self.storage_numel
            );
        }
        Ok(())
    }

    /// The view's elements in row-major order, read from its storage's bytes.
    fn gather(&self, bytes: &[u8]) -> Vec<f32> {
        let numel: usize = self.size.iter().product();
        let mut out = Vec::with_capacity(numel);
        if numel == 0 {
            return out;
        }
        let rank = self.size.len();
        let (inner, step) = match rank {
            0 => (1, 1),
            _ => (self.size[rank - 1], self.stride[rank - 1]),
        };
        let outer = &self.size[..rank.saturating_sub(1)];
        let mut index = vec![0; outer.len()];
        loop {
            let skip: usize = index.iter().zip(&self.stride).map(|(i, s)| i * s).sum();
            let base = self.offset + skip;
            out.extend((0..inner).map(|j| self.element(bytes, base + j * step)));
            let Some(d) = (0..outer.len()).rev().find(|&d| index[d] + 1 < outer[d]) else {
                return out;
            };
            index[d] += 1;
            index[d + 1..].fill(0);
        }
    }

    /// Element `i` of the storage (in range: checked when the view was built).
    fn element(&self, bytes: &[u8], i: usize) -> f32 {
        let at = |w: usize| &bytes[i * w..(i + 1) * w];
        match self.dtype {
            DType::F32 => f32::from_le_bytes(at(4).try_into().unwrap()),
            DType::F16 => crate::numeric::f16_to_f32(u16::from_le_bytes(at(2).try_into().unwrap())),
            DType::BF16 => {
                f32::from_bits(u32::from(u16::from_le_bytes(at(2).try_into().unwrap())) << 16)
            }
            DType::F64 => f64::from_le_bytes(at(8).try_into().unwrap()) as f32,
        }
    }
}

/// The pickle opcodes this module interprets, named as in Python's `pickletools`.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const FRAME: u8 = 0x95;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINFLOAT: u8 = b'G';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const GLOBAL: u8 = b'c';
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const BINPERSID: u8 = b'Q';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MEMOIZE: u8 = 0x94;
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
}

/// The globals a state dict names; everything else is refused.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    /// A `torch.*Storage` type: its float dtype, `None` for `LongStorage`.
    Storage(Option<DType>),
}

fn whitelisted(module: &str, name: &str) -> Option<Global> {
    let storage = |dtype| Some(Global::Storage(dtype));
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch", "FloatStorage") => storage(Some(DType::F32)),
        ("torch", "HalfStorage") => storage(Some(DType::F16)),
        ("torch", "BFloat16Storage") => storage(Some(DType::BF16)),
        ("torch", "DoubleStorage") => storage(Some(DType::F64)),
        ("torch", "LongStorage") => storage(None),
        _ => None,
    }
}

/// A value on the machine's stack. Containers live in `Machine::objects`, so a memo
/// lookup copies an index, never a container, and mutation is seen by every holder.
#[derive(Clone, Debug)]
enum Value {
    /// None, a bool, a float or an int64 tensor: carried along, never looked into.
    Inert(&'static str),
    Int(i64),
    Str(Rc<str>),
    Global(Global),
    Object(usize),
}

#[derive(Debug)]
enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Storage {
        dtype: Option<DType>,
        key: Rc<str>,
        numel: usize,
    },
    Tensor(View),
}

/// The float tensors of the state dict a pickle holds, with Python's semantics for a
/// repeated key (its last value, at its first place). Storages are limited to `limit`
/// bytes (the file's size), each view to `limit` elements, all views to twice that.
fn state_dict(pickle: &[u8], limit: u64) -> Result<Vec<(String, View)>> {
    let mut machine = Machine {
        pickle,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objects: Vec::new(),
        limit,
    };
    let top = machine.run()?;
    let m = &machine;
    let entries = m.entries(&top)?;
    let mut order = Vec::new();
    let mut latest = HashMap::new();
    for (key, value) in entries {
        if let Value::Str(name) = key {
            if latest.insert(name.clone(), value).is_none() {
                order.push(name.clone());
            }
        }
    }
    let tensors: Vec<_> = order
        .into_iter()
        .filter_map(|name| match latest[&name] {
            Value::Object(i) => match &m.objects[*i] {
                Object::Tensor(view) => Some((name.to_string(), view.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    if tensors.is_empty() {
        bail!("the state dict holds no float tensors");
    }
    let numel = |view: &View| view.size.iter().product::<usize>() as u64;
    let total = tensors
        .iter()
        .map(|(_, view)| numel(view))
        .fold(0, u64::saturating_add);
    if total > limit.saturating_mul(2) {
        bail!("the tensors hold {total} elements in all, more than twice the file's {limit} bytes");
    }
    Ok(tensors)
}

/// A pickle interpreter for state dicts: it builds values and never calls anything.
struct Machine<'a> {
    pickle: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// The stack's length at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    objects: Vec<Object>,
    limit: u64,
}

/// Running the pickle, opcode by opcode.
impl Machine<'_> {
    fn run(&mut self) -> Result<Value> {
        loop {
            match self.byte()? {
                op::STOP => return self.pop(),
                code => self.step(code)?,
            }
        }
    }

    fn step(&mut self, code: u8) -> Result<()> {
        if let Some(value) = self.literal(code)? {
            self.stack.push(value);
            return Ok(());
        }
        match code {
            op::PROTO => match self.byte()? {
                0..=5 => {}
                v => bail!("pickle protocol {v} is unknown"),
            },
            op::FRAME => drop(self.take(8)?),
            op::MARK => self.marks.push(self.stack.len()),
            op::EMPTY_DICT => self.push(Object::Dict(Vec::new())),
            op::EMPTY_LIST => self.push(Object::List(Vec::new())),
            op::EMPTY_TUPLE => self.push(Object::Tuple(Vec::new())),
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push(Object::Tuple(items));
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let items = self.pop_n(usize::from(code - op::TUPLE1 + 1))?;
                self.push(Object::Tuple(items));
            }
            op::GLOBAL => {
                let (module, name) = (self.line()?, self.line()?);
                self.global(module, name)?;
            }
            op::STACK_GLOBAL => {
                let (name, module) = (self.pop()?, self.pop()?);
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => self.global(&module, &name)?,
                    _ => bail!("STACK_GLOBAL names a global with something not a string"),
                }
            }
            op::REDUCE => {
                let (args, func) = (self.pop()?, self.pop()?);
                let value = self.reduce(&func, &args)?;
                self.stack.push(value);
            }
            op::BUILD => self.build()?,
            op::BINPERSID => {
                let pid = self.pop()?;
                let value = self.persistent_load(&pid)?;
                self.stack.push(value);
            }
            _ => self.step_memo_or_items(code)?,
        }
        Ok(())
    }

    fn step_memo_or_items(&mut self, code: u8) -> Result<()> {
        match code {
            op::BINPUT => {
                let slot = self.byte()?.into();
                self.put(slot)?;
            }
            op::LONG_BINPUT => {
                let slot = u32::from_le_bytes(self.array()?).into();
                self.put(slot)?;
            }
            op::MEMOIZE => self.put(self.memo.len() as u64)?,
            op::BINGET => {
                let slot = self.byte()?.into();
                self.get(slot)?;
            }
            op::LONG_BINGET => {
                let slot = u32::from_le_bytes(self.array()?).into();
                self.get(slot)?;
            }
            op::SETITEM => {
                let (value, key) = (self.pop()?, self.pop()?);
                self.dict_on_top()?.push((key, value));
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    bail!("SETITEMS with an odd number of items");
                }
                let mut items = items.into_iter();
                let dict = self.dict_on_top()?;
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    dict.push((key, value));
                }
            }
            op::APPEND => {
                let value = self.pop()?;
                self.list_on_top()?.push(value);
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                self.list_on_top()?.extend(items);
            }
            _ => bail!(
                "the pickle uses opcode 0x{code:02x}{} at byte {}, which a state dict never \
                 needs; refusing to load it (nothing was executed)",
                match code.is_ascii_graphic() {
                    true => format!(" ('{}')", code as char),
                    false => String::new(),
                },
                self.pos - 1
            ),
        }
        Ok(())
    }

    /// The value a literal's opcode pushes; `None` for other opcodes.
    fn literal(&mut self, code: u8) -> Result<Option<Value>> {
        Ok(Some(match code {
            op::NONE => Value::Inert("None"),
            op::NEWTRUE | op::NEWFALSE => Value::Inert("a bool"),
            op::BINFLOAT => {
                self.take(8)?;
                Value::Inert("a float")
            }
            op::BININT => Value::Int(i32::from_le_bytes(self.array()?).into()),
            op::BININT1 => Value::Int(self.byte()?.into()),
            op::BININT2 => Value::Int(u16::from_le_bytes(self.array()?).into()),
            op::LONG1 => {
                let len = self.byte()?;
                Value::Int(long(self.take(len.into())?)?)
            }
            op::SHORT_BINUNICODE => {
                let len = self.byte()?;
                self.string(len.into())?
            }
            op::BINUNICODE => {
                let len = u32::from_le_bytes(self.array()?);
                self.string(len.into())?
            }
            op::BINUNICODE8 => {
                let len = u64::from_le_bytes(self.array()?);
                self.string(len)?
            }
            _ => return Ok(None),
        }))
    }
}

/// Reading the pickle's bytes and moving values on the stack and memo.
impl<'a> Machine<'a> {
    fn take(&mut self, len: u64) -> Result<&'a [u8]> {
        let rest = &self.pickle[self.pos..];
        let Some(bytes) = usize::try_from(len).ok().and_then(|n| rest.get(..n)) else {
            bail!(
                "the pickle ends early: {len} bytes wanted at byte {} of {}",
                self.pos,
                self.pickle.len()
            );
        };
        self.pos += bytes.len();
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N as u64)?.try_into()?)
    }

    /// A newline-terminated argument of GLOBAL.
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.pickle[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .context("the pickle ends inside a GLOBAL")?;
        let text =
            std::str::from_utf8(self.take(len as u64)?).context("a GLOBAL name is not UTF-8")?;
        self.pos += 1;
        Ok(text)
    }

    fn string(&mut self, len: u64) -> Result<Value> {
        let text = std::str::from_utf8(self.take(len)?).context("a pickled string is not UTF-8")?;
        Ok(Value::Str(text.into()))
    }

    /// The stack's bottom as the innermost MARK left it.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value> {
        Ok(self.pop_n(1)?.remove(0))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>> {
        let len = self.stack.len();
        if len < self.floor() + n {
            bail!(
                "the pickle takes more from its stack than it holds (at byte {})",
                self.pos
            );
        }
        Ok(self.stack.split_off(len - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .context("the pickle closes a MARK it never opened")?;
        Ok(self.stack.split_off(mark))
    }

    fn push(&mut self, object: Object) {
        let value = self.new_object(object);
        self.stack.push(value);
    }

    fn new_object(&mut self, object: Object) -> Value {
        self.objects.push(object);
        Value::Object(self.objects.len() - 1)
    }

    fn put(&mut self, slot: u64) -> Result<()> {
        let top = self
            .stack
            .last()
            .context("the pickle memoizes from an empty stack")?;
        self.memo.insert(slot, top.clone());
        Ok(())
    }

    fn get(&mut self, slot: u64) -> Result<()> {
        let value = self.memo.get(&slot);
        let value =
            value.with_context(|| format!("the pickle reads memo slot {slot}, never written"))?;
        self.stack.push(value.clone());
        Ok(())
    }

    /// The object on top of the stack (above the innermost MARK).
    fn object_on_top(&mut self) -> Option<&mut Object> {
        match self.stack.last() {
            Some(Value::Object(i)) if self.stack.len() > self.floor() => self.objects.get_mut(*i),
            _ => None,
        }
    }

    fn dict_on_top(&mut self) -> Result<&mut Vec<(Value, Value)>> {
        match self.object_on_top() {
            Some(Object::Dict(items)) => Ok(items),
            _ => bail!("the pickle sets an item on something not a dict"),
        }
    }

    fn list_on_top(&mut self) -> Result<&mut Vec<Value>> {
        match self.object_on_top() {
            Some(Object::List(items)) => Ok(items),
            _ => bail!("the pickle appends to something not a list"),
        }
    }
}

/// Interpreting what a state dict's pickle names and calls.
impl Machine<'_> {
    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        let global = whitelisted(module, name).with_context(|| {
            format!(
                "the pickle names {module}.{name}, which a state dict never uses; refusing to \
                 load it (nothing was executed)"
            )
        })?;
        self.stack.push(Value::Global(global));
        Ok(())
    }

    fn reduce(&mut self, func: &Value, args: &Value) -> Result<Value> {
        let args = self
            .tuple(args)
            .context("REDUCE with arguments not a tuple")?
            .to_vec();
        match func {
            Value::Global(Global::OrderedDict) if args.is_empty() => {
                Ok(self.new_object(Object::Dict(Vec::new())))
            }
            Value::Global(Global::RebuildTensor) => self.rebuild_tensor(&args),
            Value::Global(Global::RebuildParameter) => args
                .first()
                .cloned()
                .context("_rebuild_parameter without arguments"),
            _ => bail!(
                "the pickle calls {} with {} arguments, which a state dict never does",
                self.kind(func),
                args.len()
            ),
        }
    }

    /// BUILD sets attributes; on a dict (`OrderedDict._metadata`) they hold no tensors.
    fn build(&mut self) -> Result<()> {
        self.pop()?;
        match self.object_on_top() {
            Some(Object::Dict(_)) => Ok(()),
            _ => bail!("the pickle sets the state of something not a dict"),
        }
    }

    /// `('storage', type, key, location, numel)`, as `torch.save` writes for each storage.
    fn persistent_load(&mut self, pid: &Value) -> Result<Value> {
        let (dtype, key, numel) = match self.tuple(pid) {
            Some(
                [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), _, numel],
            ) if &**tag == "storage" => (*dtype, key.clone(), to_usize(numel)?),
            _ => bail!("a persistent id not of the form ('storage', type, key, location, numel)"),
        };
        Ok(self.new_object(Object::Storage { dtype, key, numel }))
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, checked against its storage.
    fn rebuild_tensor(&mut self, args: &[Value]) -> Result<Value> {
        let [storage, offset, size, stride, ..] = args else {
            bail!(
                "_rebuild_tensor with {} arguments, not at least 4",
                args.len()
            );
        };
        let (dtype, key, storage_numel) = match storage {
            Value::Object(i) => match &self.objects[*i] {
                Object::Storage { dtype, key, numel } => (*dtype, key.clone(), *numel),
                _ => bail!("_rebuild_tensor of {}, not a storage", self.kind(storage)),
            },
            _ => bail!("_rebuild_tensor of {}, not a storage", self.kind(storage)),
        };
        let Some(dtype) = dtype else {
            return Ok(Value::Inert("an int64 tensor"));
        };
        let view = View {
            dtype,
            key,
            storage_numel,
            offset: to_usize(offset)?,
            size: self.usizes(size)?,
            stride: self.usizes(stride)?,
        };
        view.check(self.limit)?;
        Ok(self.new_object(Object::Tensor(view)))
    }

    /// The saved dict's items, or those of the state dict it holds under `model` or
    /// `state_dict`.
    fn entries(&self, top: &Value) -> Result<&[(Value, Value)]> {
        let entries = self.dict(top);
        let entries = entries
            .with_context(|| format!("the pickle holds {}, not a state dict", self.kind(top)))?;
        for wrapper in ["model", "state_dict"] {
            let inner = entries
                .iter()
                .rev()
                .find(|(key, _)| matches!(key, Value::Str(k) if &**k == wrapper));
            if let Some(inner) = inner.and_then(|(_, value)| self.dict(value)) {
                return Ok(inner);
            }
        }
        Ok(entries)
    }

    fn tuple(&self, value: &Value) -> Option<&[Value]> {
        match value {
            Value::Object(i) => match &self.objects[*i] {
                Object::Tuple(items) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    fn dict(&self, value: &Value) -> Option<&[(Value, Value)]> {
        match value {
            Value::Object(i) => match &self.objects[*i] {
                Object::Dict(items) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    fn usizes(&self, value: &Value) -> Result<Vec<usize>> {
        let items = self.tuple(value);
        let items = items.with_context(|| {
            format!(
                "a tensor size or stride is {}, not a tuple",
                self.kind(value)
            )
        })?;
        items.iter().map(to_usize).collect()
    }

    /// What a value is, for messages.
    fn kind(&self, value: &Value) -> String {
        match value {
            Value::Inert(what) => what.to_string(),
            Value::Int(i) => format!("the int {i}"),
            Value::Str(_) => "a string".into(),
            Value::Global(global) => format!("the global {global:?}"),
            Value::Object(i) => match &self.objects[*i] {
                Object::Tuple(_) => "a tuple",
                Object::List(_) => "a list",
                Object::Dict(_) => "a dict",
                Object::Storage { .. } => "a storage",
                Object::Tensor(_) => "a tensor",
            }
            .into(),
        }
    }
}

fn to_usize(value: &Value) -> Result<usize> {
    match value {
        Value::Int(i) => usize::try_from(*i)
            .ok()
            .with_context(|| format!("{i} where a size, stride or offset belongs")),
        _ => bail!("something not an int where a size, stride or offset belongs"),
    }
}

/// LONG1's little-endian two's complement integer, up to 8 bytes.
fn long(bytes: &[u8]) -> Result<i64> {
    if bytes.len() > 8 {
        bail!("an integer of {} bytes is too large", bytes.len());
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let mut full = [if negative { 0xff } else { 0 }; 8];
    full[..bytes.len()].copy_from_slice(bytes);
    Ok(i64::from_le_bytes(full))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A zip at a unique temporary path, removed on drop.
    struct TempZip(PathBuf);

    impl TempZip {
        fn with_entries(entries: &[(String, Vec<u8>)]) -> Self {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let name = format!("neuronpath-pth-test-{}-{n}.pth", std::process::id());
            let path = std::env::temp_dir().join(name);
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            for (name, bytes) in entries {
                zip.start_file(name, options).unwrap();
                zip.write_all(bytes).unwrap();
            }
            zip.finish().unwrap();
            TempZip(path)
        }

        /// `torch.save`'s layout: the pickle, the byte order and `data/<key>` storages.
        fn new(pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> Self {
            let mut entries = vec![
                ("archive/data.pkl".to_string(), pickle.to_vec()),
                ("archive/byteorder".to_string(), b"little".to_vec()),
            ];
            for (key, bytes) in storages {
                entries.push((format!("archive/data/{key}"), bytes.clone()));
            }
            Self::with_entries(&entries)
        }

        fn error(&self) -> String {
            let message = format!("{:#}", read(&self.0).unwrap_err());
            assert!(
                message.starts_with(&self.0.display().to_string()),
                "{message}"
            );
            message
        }
    }

    impl Drop for TempZip {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn string(text: &str) -> Vec<u8> {
        [
            &[op::BINUNICODE][..],
            &(text.len() as u32).to_le_bytes(),
            text.as_bytes(),
        ]
        .concat()
    }

    fn int(value: i32) -> Vec<u8> {
        [&[op::BININT][..], &value.to_le_bytes()].concat()
    }

    fn global(module: &str, name: &str) -> Vec<u8> {
        format!("c{module}\n{name}\n").into_bytes()
    }

    fn tuple(items: &[i32]) -> Vec<u8> {
        let items = items.iter().flat_map(|&i| int(i));
        [op::MARK]
            .into_iter()
            .chain(items)
            .chain([op::TUPLE])
            .collect()
    }

    /// `_rebuild_tensor_v2` of `numel` elements of `torch.<storage>` `key`, as torch.save writes it.
    fn tensor(
        storage: &str,
        key: &str,
        numel: i32,
        offset: i32,
        shape: &[i32],
        stride: &[i32],
    ) -> Vec<u8> {
        let pid = [
            string("storage"),
            global("torch", storage),
            string(key),
            string("cpu"),
            int(numel),
        ];
        [
            global("torch._utils", "_rebuild_tensor_v2"),
            vec![op::MARK, op::MARK],
            pid.concat(),
            vec![op::TUPLE, op::BINPERSID],
            int(offset),
            tuple(shape),
            tuple(stride),
            vec![op::NEWFALSE],
            global("collections", "OrderedDict"),
            vec![op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE],
        ]
        .concat()
    }

    /// SETITEMS of named pickled values.
    fn items(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut bytes = vec![op::MARK];
        for (key, value) in entries {
            bytes.extend(string(key));
            bytes.extend(value);
        }
        bytes.push(op::SETITEMS);
        bytes
    }

    /// A dict of named pickled values.
    fn dict(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        [vec![op::EMPTY_DICT], items(entries)].concat()
    }

    fn pickle(body: &[u8]) -> Vec<u8> {
        [&[op::PROTO, 2][..], body, &[op::STOP]].concat()
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// One float tensor `t` over storage `0` of six floats 0..6.
    fn one_tensor(offset: i32, shape: &[i32], stride: &[i32]) -> TempZip {
        let body = dict(&[("t", tensor("FloatStorage", "0", 6, offset, shape, stride))]);
        TempZip::new(
            &pickle(&body),
            &[("0", f32_bytes(&[0., 1., 2., 3., 4., 5.]))],
        )
    }

    #[test]
    fn refuses_globals_that_would_run_code() {
        for (module, name) in [
            ("os", "system"),
            ("posix", "system"),
            ("builtins", "eval"),
            ("subprocess", "Popen"),
        ] {
            let body = [
                global(module, name),
                string("touch /tmp/pwned"),
                vec![op::TUPLE1, op::REDUCE],
            ];
            let message = TempZip::new(&pickle(&body.concat()), &[]).error();
            assert!(
                message.contains(&format!("the pickle names {module}.{name}, ")),
                "{message}"
            );
            assert!(message.contains("nothing was executed"), "{message}");
        }
    }

    #[test]
    fn refuses_a_stack_global_inside_a_state_dict() {
        let short = |s: &str| [&[op::SHORT_BINUNICODE, s.len() as u8][..], s.as_bytes()].concat();
        let attack = [
            short("builtins"),
            short("eval"),
            vec![op::STACK_GLOBAL],
            string("1"),
            vec![op::TUPLE1, op::REDUCE],
        ];
        let body = dict(&[
            ("ok", tensor("FloatStorage", "0", 6, 0, &[6], &[1])),
            ("bad", attack.concat()),
        ]);
        let message = TempZip::new(&pickle(&body), &[("0", f32_bytes(&[0.; 6]))]).error();
        assert!(
            message.contains("the pickle names builtins.eval, "),
            "{message}"
        );
    }

    #[test]
    fn refuses_unknown_opcodes() {
        // INST, OBJ and NEWOBJ build instances of arbitrary classes.
        for (code, shown) in [
            (b'i', "0x69 ('i')"),
            (b'o', "0x6f ('o')"),
            (0x81, "0x81 at byte 2"),
        ] {
            let message = TempZip::new(&pickle(&[code, b'x', b'\n']), &[]).error();
            assert!(message.contains(&format!("opcode {shown}")), "{message}");
            assert!(message.contains("nothing was executed"), "{message}");
        }
    }

    #[test]
    fn reads_strided_views_and_skips_non_tensors() {
        let state = dict(&[
            (
                "transposed",
                tensor("FloatStorage", "0", 6, 0, &[3, 2], &[1, 3]),
            ),
            ("every_other", tensor("FloatStorage", "0", 6, 1, &[2], &[2])),
            ("scalar", tensor("FloatStorage", "0", 6, 5, &[], &[])),
            (
                "expanded",
                tensor("FloatStorage", "0", 6, 4, &[2, 2], &[0, 1]),
            ),
            ("steps", tensor("LongStorage", "1", 1, 0, &[], &[])),
            ("epoch", int(7)),
        ]);
        let body = dict(&[("model", state), ("args", string("not a dict"))]);
        let storages = [
            ("0", f32_bytes(&[0., 1., 2., 3., 4., 5.])),
            ("1", 3i64.to_le_bytes().to_vec()),
        ];
        let zip = TempZip::new(&pickle(&body), &storages);
        let want: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
            ("transposed", vec![3, 2], vec![0., 3., 1., 4., 2., 5.]),
            ("every_other", vec![2], vec![1., 3.]),
            ("scalar", vec![], vec![5.]),
            ("expanded", vec![2, 2], vec![4., 5., 4., 5.]),
        ];
        let got = read(&zip.0).unwrap();
        let got: Vec<_> = got
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
            .collect();
        assert_eq!(got, want);
    }

    /// `model.state_dict()` itself: an OrderedDict with `_metadata` set by BUILD, here in
    /// protocol 4 (FRAME, MEMOIZE), holding a parameter and a tied copy of it.
    #[test]
    fn reads_an_ordered_dict_of_parameters_in_protocol_4() {
        let ordered_dict = [
            global("collections", "OrderedDict"),
            vec![op::EMPTY_TUPLE, op::REDUCE],
        ]
        .concat();
        let parameter = [
            global("torch._utils", "_rebuild_parameter"),
            vec![op::MARK],
            tensor("FloatStorage", "0", 6, 2, &[2], &[1]),
            vec![op::NEWTRUE],
            ordered_dict.clone(),
            vec![op::TUPLE, op::REDUCE, op::MEMOIZE],
        ];
        let version = dict(&[("version", int(1))]);
        let metadata = [ordered_dict.clone(), items(&[("", version)])].concat();
        let tied = vec![op::LONG_BINGET, 1, 0, 0, 0];
        let state = dict(&[("_metadata", metadata)]);
        let body = [
            ordered_dict,
            vec![op::MEMOIZE],
            items(&[("w", parameter.concat()), ("tied", tied)]),
            state,
            vec![op::BUILD, op::STOP],
        ]
        .concat();
        let frame = [
            &[op::PROTO, 4, op::FRAME][..],
            &(body.len() as u64).to_le_bytes(),
        ]
        .concat();
        let zip = TempZip::new(
            &[frame, body].concat(),
            &[("0", f32_bytes(&[0., 1., 2., 3., 4., 5.]))],
        );
        let got = read(&zip.0).unwrap();
        let want = [
            ("w".to_string(), vec![2], vec![2., 3.]),
            ("tied".to_string(), vec![2], vec![2., 3.]),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn converts_half_bfloat16_and_double() {
        let state = dict(&[
            ("half", tensor("HalfStorage", "h", 2, 0, &[2], &[1])),
            ("bf16", tensor("BFloat16Storage", "b", 1, 0, &[1], &[1])),
            ("double", tensor("DoubleStorage", "d", 1, 0, &[1], &[1])),
        ]);
        let body = dict(&[("state_dict", state)]);
        let storages = [
            (
                "h",
                [0x3e00u16.to_le_bytes(), 0xc000u16.to_le_bytes()].concat(),
            ),
            ("b", 0xc040u16.to_le_bytes().to_vec()),
            ("d", 0.25f64.to_le_bytes().to_vec()),
        ];
        let got = read(&TempZip::new(&pickle(&body), &storages).0).unwrap();
        let values: Vec<f32> = got.into_iter().flat_map(|(_, _, v)| v).collect();
        assert_eq!(values, [1.5, -2.0, -3.0, 0.25]);
    }

    #[test]
    fn refuses_views_outside_their_storage() {
        let cases: [(i32, &[i32], &[i32], &str); 5] = [
            (
                0,
                &[7],
                &[1],
                "reaches past the 6 elements of its storage 0",
            ),
            (5, &[2], &[1], "reaches past"),
            (0, &[3, 2], &[1, 4], "reaches past"),
            (0, &[1 << 30, 1 << 30], &[0, 0], "larger than the file"),
            (0, &[2], &[-1], "-1 where a size, stride or offset belongs"),
        ];
        for (offset, shape, stride, expected) in cases {
            let message = one_tensor(offset, shape, stride).error();
            assert!(message.contains(expected), "{message}");
        }
        // Views within the file's size, but many: repeated stride-0 expansions.
        let expanded = tensor("FloatStorage", "0", 6, 0, &[1000], &[0]);
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let copies: Vec<_> = names.map(|name| (name, expanded.clone())).into();
        let zip = TempZip::new(&pickle(&dict(&copies)), &[("0", vec![0; 24])]);
        let message = zip.error();
        assert!(
            message.contains("8000 elements in all, more than twice"),
            "{message}"
        );
        let huge = dict(&[("t", tensor("FloatStorage", "0", i32::MAX, 0, &[1], &[1]))]);
        let message = TempZip::new(&pickle(&huge), &[("0", vec![0; 4])]).error();
        assert!(message.contains("more than the file holds"), "{message}");
    }

    #[test]
    fn refuses_short_or_missing_storages() {
        let body = dict(&[("t", tensor("FloatStorage", "0", 6, 0, &[6], &[1]))]);
        let message = TempZip::new(&pickle(&body), &[("0", vec![0; 16])]).error();
        assert!(
            message.contains("holds 16 bytes, its tensor needs 24"),
            "{message}"
        );
        let message = TempZip::new(&pickle(&body), &[]).error();
        assert!(
            message.contains("missing entry archive/data/0"),
            "{message}"
        );
    }

    #[test]
    fn refuses_files_that_are_not_torch_zips() {
        let zip = one_tensor(0, &[6], &[1]);
        let bytes = std::fs::read(&zip.0).unwrap();
        std::fs::write(&zip.0, &bytes[..bytes.len() / 2]).unwrap();
        assert!(zip.error().contains("not a readable zip archive"));
        std::fs::write(&zip.0, pickle(&dict(&[]))).unwrap();
        assert!(zip.error().contains("not a readable zip archive"));
        let other = TempZip::with_entries(&[("model/weights.bin".into(), vec![1, 2])]);
        assert!(other.error().contains("no <name>/data.pkl"));
        let body = pickle(&dict(&[]));
        let big = TempZip::with_entries(&[
            ("a/data.pkl".into(), body.clone()),
            ("a/byteorder".into(), b"big".to_vec()),
        ]);
        assert!(big.error().contains("big-endian"));
        assert!(TempZip::new(&body, &[])
            .error()
            .contains("holds no float tensors"));
        let list = pickle(&[op::EMPTY_LIST]);
        assert!(TempZip::new(&list, &[])
            .error()
            .contains("holds a list, not a state dict"));
    }

    #[test]
    fn malformed_pickles_are_errors_never_panics() {
        let body = dict(&[("t", tensor("FloatStorage", "0", 6, 1, &[2, 2], &[2, 1]))]);
        let good = pickle(&body);
        let storage = [("0", f32_bytes(&[0., 1., 2., 3., 4., 5.]))];
        assert_eq!(
            read(&TempZip::new(&good, &storage).0).unwrap()[0].2,
            [1., 2., 3., 4.]
        );
        for len in 0..good.len() {
            let message = TempZip::new(&good[..len], &storage).error();
            assert!(!message.is_empty());
        }
        for at in 0..good.len() {
            for byte in [
                0x00,
                0x7f,
                0xff,
                op::MARK,
                op::BINGET,
                op::LONG1,
                op::STOP,
                op::TUPLE3,
            ] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = read(&TempZip::new(&bad, &storage).0);
            }
        }
    }

    #[test]
    fn long_integers_sign_extend() {
        assert_eq!(long(&[]).unwrap(), 0);
        assert_eq!(long(&[0xff]).unwrap(), -1);
        assert_eq!(long(&[0x00, 0x80]).unwrap(), -32768);
        assert_eq!(long(&[0x00, 0x00, 0x00, 0x80, 0x00]).unwrap(), 1 << 31);
        assert!(long(&[0; 9]).is_err());
    }
}
