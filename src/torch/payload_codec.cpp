// PayloadCodec over libtorch's pickle serializer (torch::pickle_save / pickle_load):
// the zip format Python's torch.load reads. Known limits, lifted by the serialization
// issue's own reader and writer: the payload is built in memory before it is written;
// Python's weights_only loaders refuse its torch.jit._pickle.restore_type_tag global;
// pickle_load cannot read many files Python's torch.save writes.
#include "torch/payload_codec.hpp"

#include <ATen/core/List.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <fmt/format.h>

#include "ckpt/errors.hpp"

namespace ckpt::torch_layer {

namespace {

c10::IValue to_device(const c10::IValue& value, c10::Device device) {
  if (value.isTensor()) return value.toTensor().to(device);
  if (value.isGenericDict()) {
    auto source = value.toGenericDict();
    c10::impl::GenericDict mapped(source.keyType(), source.valueType());
    mapped.reserve(source.size());
    for (const auto& entry : source) mapped.insert(entry.key(), to_device(entry.value(), device));
    return mapped;
  }
  if (value.isList()) {
    auto source = value.toList();
    c10::impl::GenericList mapped(source.elementType());
    mapped.reserve(source.size());
    for (const c10::IValue& element : source) mapped.push_back(to_device(element, device));
    return mapped;
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> elements;
    for (const auto& element : value.toTupleRef().elements()) elements.push_back(to_device(element, device));
    return c10::ivalue::Tuple::create(std::move(elements));
  }
  return value;
}

class LibtorchPickleCodec final : public PayloadCodec {
 public:
  EncodedPayload encode(const State& state) override {
    // pickle_save builds the whole archive in memory; the shared_ptr keeps it alive for
    // the writer, which may run after this returns.
    auto bytes = std::make_shared<std::vector<char>>(torch::jit::pickle_save(state.to_ivalue()));
    EncodedPayload payload;
    payload.size_hint = bytes->size();
    payload.write = [bytes](ByteSink& sink) { sink.write(bytes->data(), bytes->size()); };
    return payload;
  }

  State decode(const std::vector<char>& bytes, c10::Device device, const std::filesystem::path& source) override {
    c10::IValue value;
    try {
      value = torch::jit::pickle_load(bytes);
    } catch (const std::exception& error) {
      throw FormatError(ErrorCode::format,
                        fmt::format("{}: not a readable checkpoint payload: {}", source.string(),
                                    first_line(error.what())),
                        source);
    }
    if (!value.isGenericDict()) {
      throw FormatError(ErrorCode::format,
                        fmt::format("{}: payload holds a {}, not a dict of training state", source.string(),
                                    value.tagKind()),
                        source);
    }
    if (device != c10::Device(c10::kCPU)) value = to_device(value, device);
    try {
      return State::from_generic_dict(value.toGenericDict());
    } catch (const StateError& error) {
      throw FormatError(ErrorCode::format, fmt::format("{}: {}", source.string(), error.what()), source);
    }
  }

 private:
  // c10 errors carry a multi-line C++ backtrace; the first line is the message.
  static std::string first_line(const char* text) {
    std::string message(text);
    return message.substr(0, message.find('\n'));
  }
};

}  // namespace

PayloadCodec& PayloadCodec::standard() {
  static LibtorchPickleCodec codec;
  return codec;
}

void require_usable_device(c10::Device device) {
  try {
    (void)at::empty({0}, at::TensorOptions().device(device));
  } catch (const c10::Error&) {
    throw InvalidArgument(fmt::format("device '{}' cannot be used by this libtorch build (is it compiled with {} "
                                      "support, and is a device present?)",
                                      device.str(), c10::DeviceTypeName(device.type())));
  }
}

}  // namespace ckpt::torch_layer
