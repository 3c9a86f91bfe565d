#include "format/pickle_writer.hpp"

#include <cstring>
#include <map>

#include "format/format_error.hpp"

namespace ckpt::format {

namespace {

// Python's pickler batches APPENDS and SETITEMS by this many items.
constexpr std::size_t kBatchSize = 1000;

class Writer {
 public:
  std::string finish(const ValuePtr& root) {
    out_ += '\x80';
    out_ += '\x02';
    emit(root, 0);
    out_ += '.';
    return std::move(out_);
  }

 private:
  void put_u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }

  // [2^63, 2^64): LONG1 of 9 bytes, the 64 bits and a zero byte (as Python writes it).
  void emit_unsigned(std::uint64_t u) {
    out_ += '\x8a';
    out_ += '\x09';
    for (int i = 0; i < 8; ++i) out_ += static_cast<char>((u >> (8 * i)) & 0xff);
    out_ += '\0';
  }

  void emit_int(std::int64_t v) {
    if (v >= 0 && v < 0x100) {
      out_ += 'K';
      out_ += static_cast<char>(v);
    } else if (v >= 0 && v < 0x10000) {
      out_ += 'M';
      out_ += static_cast<char>(v & 0xff);
      out_ += static_cast<char>(v >> 8);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out_ += 'J';
      put_u32(static_cast<std::uint32_t>(static_cast<std::int32_t>(v)));
    } else {
      // LONG1: the shortest little-endian two's complement form, as Python writes it.
      std::string bytes;
      std::uint64_t u = static_cast<std::uint64_t>(v);
      for (int i = 0; i < 8; ++i) bytes += static_cast<char>((u >> (8 * i)) & 0xff);
      while (bytes.size() > 1) {
        auto last = static_cast<std::uint8_t>(bytes.back());
        auto prev = static_cast<std::uint8_t>(bytes[bytes.size() - 2]);
        if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) {
          bytes.pop_back();
        } else {
          break;
        }
      }
      out_ += '\x8a';
      out_ += static_cast<char>(bytes.size());
      out_ += bytes;
    }
  }

  void emit_string(const std::string& text) {
    out_ += 'X';
    put_u32(static_cast<std::uint32_t>(text.size()));
    out_ += text;
  }

  // Globals are memoized (BINPUT once, BINGET after), as Python's pickler does.
  void emit_global(const std::string& module, const std::string& name) {
    std::string key = module + "\n" + name;
    auto found = memo_.find(key);
    if (found != memo_.end()) {
      emit_get(found->second);
      return;
    }
    out_ += 'c';
    out_ += module;
    out_ += '\n';
    out_ += name;
    out_ += '\n';
    std::uint32_t index = static_cast<std::uint32_t>(memo_.size());
    memo_.emplace(key, index);
    emit_memo_op('q', 'r', index);  // BINPUT / LONG_BINPUT
  }

  void emit_get(std::uint32_t index) { emit_memo_op('h', 'j', index); }  // BINGET / LONG_BINGET

  // A memo opcode: the one-byte form for indexes below 256, else the four-byte one.
  void emit_memo_op(char short_op, char long_op, std::uint32_t index) {
    if (index < 256) {
      out_ += short_op;
      out_ += static_cast<char>(index);
    } else {
      out_ += long_op;
      put_u32(index);
    }
  }

  void emit_empty_ordered_dict() {
    emit_global("collections", "OrderedDict");
    out_ += ')';
    out_ += 'R';
  }

  void emit_int_tuple(const std::vector<std::int64_t>& ints) {
    if (ints.empty()) {
      out_ += ')';
      return;
    }
    if (ints.size() > 3) out_ += '(';
    for (auto v : ints) emit_int(v);
    out_ += ints.size() > 3 ? 't' : static_cast<char>(0x84 + ints.size());
  }

  void emit_tensor(const TensorInfo& tensor) {
    if (tensor.is_parameter) emit_global("torch._utils", "_rebuild_parameter");
    switch (tensor.layout) {
      case TensorLayout::strided: emit_strided(tensor); break;
      case TensorLayout::meta: emit_meta(tensor); break;
      case TensorLayout::sparse_coo: emit_sparse(tensor); break;
    }
    if (tensor.is_parameter) {
      out_ += tensor.requires_grad ? '\x88' : '\x89';
      emit_empty_ordered_dict();
      out_ += '\x87';  // TUPLE3
      out_ += 'R';
    }
  }

  // torch._utils._rebuild_tensor_v2((persistent id), offset, size, stride, requires_grad, hooks)
  void emit_strided(const TensorInfo& tensor) {
    emit_global("torch._utils", "_rebuild_tensor_v2");
    out_ += '(';
    // persistent id: ('storage', torch.<Type>Storage, key, location, numel)
    out_ += '(';
    emit_string("storage");
    emit_global("torch", std::string(storage_class(tensor.storage->dtype)));
    emit_string(tensor.storage->key);
    emit_string(tensor.storage->location);
    emit_int(static_cast<std::int64_t>(tensor.storage->numel));
    out_ += 't';
    out_ += 'Q';
    emit_int(tensor.storage_offset);
    emit_int_tuple(tensor.sizes);
    emit_int_tuple(tensor.strides);
    out_ += (tensor.requires_grad && !tensor.is_parameter) ? '\x88' : '\x89';
    emit_empty_ordered_dict();  // backward hooks
    out_ += 't';
    out_ += 'R';
  }

  // torch._utils._rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad), as
  // torch.save writes a tensor on the meta device.
  void emit_meta(const TensorInfo& tensor) {
    emit_global("torch._utils", "_rebuild_meta_tensor_no_storage");
    out_ += '(';
    emit_global("torch", std::string(dtype_name(tensor.meta_dtype)));
    emit_int_tuple(tensor.sizes);
    emit_int_tuple(tensor.strides);
    out_ += (tensor.requires_grad && !tensor.is_parameter) ? '\x88' : '\x89';
    out_ += 't';
    out_ += 'R';
  }

  // torch._utils._rebuild_sparse_tensor(torch.sparse_coo, (indices, values, size)), the
  // layout as torch pickles it: torch.serialization._get_layout('torch.sparse_coo').
  void emit_sparse(const TensorInfo& tensor) {
    emit_global("torch._utils", "_rebuild_sparse_tensor");
    emit_global("torch.serialization", "_get_layout");
    emit_string("torch.sparse_coo");
    out_ += '\x85';  // TUPLE1
    out_ += 'R';
    emit_tensor(*tensor.indices);
    emit_tensor(*tensor.values);
    emit_global("torch", "Size");
    emit_int_tuple(tensor.sizes);
    out_ += '\x85';
    out_ += 'R';
    out_ += '\x87';  // (indices, values, size)
    out_ += '\x86';  // (layout, data)
    out_ += 'R';
  }

  void emit(const ValuePtr& value, int depth) {
    if (depth > kMaxNesting) fail("state nests deeper than {} levels (or contains itself)", kMaxNesting);
    switch (value->kind()) {
      case ValueKind::none: out_ += 'N'; break;
      case ValueKind::boolean: out_ += value->boolean() ? '\x88' : '\x89'; break;
      case ValueKind::integer:
        if (value->is_unsigned()) {
          emit_unsigned(static_cast<std::uint64_t>(value->integer()));
        } else {
          emit_int(value->integer());
        }
        break;
      case ValueKind::floating: {
        std::uint64_t bits;
        const double floating = value->floating();
        std::memcpy(&bits, &floating, sizeof bits);
        out_ += 'G';
        for (int i = 7; i >= 0; --i) out_ += static_cast<char>((bits >> (8 * i)) & 0xff);
        break;
      }
      case ValueKind::string: emit_string(value->text()); break;
      case ValueKind::tuple: {
        const auto& items = value->items();
        if (items.empty()) {
          out_ += ')';
          break;
        }
        if (items.size() > 3) out_ += '(';
        for (const auto& item : items) emit(item, depth + 1);
        out_ += items.size() > 3 ? 't' : static_cast<char>(0x84 + items.size());
        break;
      }
      case ValueKind::list: {
        out_ += ']';
        for (std::size_t start = 0; start < value->items().size(); start += kBatchSize) {
          out_ += '(';
          for (std::size_t i = start; i < std::min(start + kBatchSize, value->items().size()); ++i) {
            emit(value->items()[i], depth + 1);
          }
          out_ += 'e';
        }
        break;
      }
      case ValueKind::dict: {
        if (value->ordered_dict()) {
          emit_empty_ordered_dict();
        } else {
          out_ += '}';
        }
        for (std::size_t start = 0; start < value->entries().size(); start += kBatchSize) {
          out_ += '(';
          for (std::size_t i = start; i < std::min(start + kBatchSize, value->entries().size()); ++i) {
            emit(value->entries()[i].first, depth + 1);
            emit(value->entries()[i].second, depth + 1);
          }
          out_ += 'u';
        }
        break;
      }
      case ValueKind::tensor: emit_tensor(*value->tensor()); break;
      case ValueKind::bytes:
      case ValueKind::storage:
      case ValueKind::dtype:
      case ValueKind::global: fail("a {} cannot be written to a checkpoint", kind_name(value->kind()));
    }
  }

  std::string out_;
  std::map<std::string, std::uint32_t> memo_;
};

}  // namespace

std::string write_pickle(const ValuePtr& root) { return Writer().finish(root); }

}  // namespace ckpt::format
