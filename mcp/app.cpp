#include "mcp/app.hpp"

#include <algorithm>
#include <array>

namespace mcpmesh::mcp {

namespace {
constexpr std::array<std::string_view, 8> kLevelNames = {
    "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"};

void put_if(json::object& o, std::string_view key, const std::string& value) {
  if (!value.empty()) o[key] = value;
}
void put_if(json::object& o, std::string_view key, const json::object& value) {
  if (!value.empty()) o[key] = value;
}
void put_if(json::object& o, std::string_view key, const json::array& value) {
  if (!value.empty()) o[key] = value;
}
}  // namespace

std::string_view to_string(LogLevel level) { return kLevelNames[static_cast<int>(level)]; }

std::optional<LogLevel> parse_log_level(std::string_view name) {
  for (std::size_t i = 0; i < kLevelNames.size(); ++i) {
    if (kLevelNames[i] == name) return static_cast<LogLevel>(i);
  }
  return std::nullopt;
}

json::object object_schema(
    std::initializer_list<std::pair<std::string_view, std::string_view>> properties,
    std::initializer_list<std::string_view> required) {
  json::object props;
  for (auto& [name, type] : properties) props[name] = json::object{{"type", type}};
  json::object schema{{"type", "object"}, {"properties", std::move(props)}};
  if (required.size() > 0) {
    json::array req;
    for (auto r : required) req.emplace_back(r);
    schema["required"] = std::move(req);
  }
  return schema;
}

// ---------------------------------------------------------------------------------------------
ToolResult ToolResult::text(std::string_view text) {
  ToolResult r;
  r.add_text(text);
  return r;
}

ToolResult ToolResult::error(std::string_view text) {
  ToolResult r = ToolResult::text(text);
  r.is_error = true;
  return r;
}

ToolResult ToolResult::structured(json::object value) {
  ToolResult r;
  r.add_text(json::serialize(value));
  r.structured_content = std::move(value);
  return r;
}

ToolResult& ToolResult::add_text(std::string_view text) {
  content.push_back(json::object{{"type", "text"}, {"text", text}});
  return *this;
}

ToolResult& ToolResult::add_image(std::string base64, std::string mime_type) {
  content.push_back(
      json::object{{"type", "image"}, {"data", std::move(base64)}, {"mimeType", mime_type}});
  return *this;
}

ToolResult& ToolResult::add_audio(std::string base64, std::string mime_type) {
  content.push_back(
      json::object{{"type", "audio"}, {"data", std::move(base64)}, {"mimeType", mime_type}});
  return *this;
}

ToolResult& ToolResult::add_resource_link(std::string uri, std::string name,
                                          std::string mime_type) {
  json::object link{{"type", "resource_link"}, {"uri", std::move(uri)}, {"name", std::move(name)}};
  put_if(link, "mimeType", mime_type);
  content.push_back(std::move(link));
  return *this;
}

ToolResult& ToolResult::add_embedded_text(std::string uri, std::string text,
                                          std::string mime_type) {
  json::object res{{"uri", std::move(uri)}, {"text", std::move(text)}};
  put_if(res, "mimeType", mime_type);
  content.push_back(json::object{{"type", "resource"}, {"resource", std::move(res)}});
  return *this;
}

json::object ToolResult::to_json() const& { return ToolResult(*this).to_json(); }

json::object ToolResult::to_json() && {
  json::object o;
  o.reserve(3);
  o.emplace("content", std::move(content));
  if (structured_content) o.emplace("structuredContent", std::move(*structured_content));
  if (is_error) o.emplace("isError", true);
  return o;
}

json::object ResourceSpec::to_json() const {
  json::object o{{"uri", uri}, {"name", name}};
  put_if(o, "title", title);
  put_if(o, "description", description);
  put_if(o, "mimeType", mime_type);
  if (size) o["size"] = *size;
  put_if(o, "annotations", annotations);
  put_if(o, "icons", icons);
  return o;
}

json::object ResourceContents::to_json() const {
  json::object o{{"uri", uri}};
  put_if(o, "mimeType", mime_type);
  if (text) o["text"] = *text;
  if (blob) o["blob"] = *blob;
  return o;
}

json::object ResourceTemplateSpec::to_json() const {
  json::object o{{"uriTemplate", uri_template}, {"name", name}};
  put_if(o, "title", title);
  put_if(o, "description", description);
  put_if(o, "mimeType", mime_type);
  put_if(o, "annotations", annotations);
  put_if(o, "icons", icons);
  return o;
}

json::object PromptSpec::to_json() const {
  json::object o{{"name", name}};
  put_if(o, "title", title);
  put_if(o, "description", description);
  if (!arguments.empty()) {
    json::array args;
    for (auto& a : arguments) {
      json::object ao{{"name", a.name}};
      put_if(ao, "title", a.title);
      put_if(ao, "description", a.description);
      if (a.required) ao["required"] = true;
      args.push_back(std::move(ao));
    }
    o["arguments"] = std::move(args);
  }
  put_if(o, "icons", icons);
  return o;
}

PromptResult& PromptResult::add_text(std::string_view role, std::string_view text) {
  return add_content(role, json::object{{"type", "text"}, {"text", text}});
}

PromptResult& PromptResult::add_content(std::string_view role, json::object content) {
  messages.push_back(json::object{{"role", role}, {"content", std::move(content)}});
  return *this;
}

// ---------------------------------------------------------------------------------------------
const App::Tool* App::Catalog::find_tool(std::string_view name) const {
  for (auto& t : tools) {
    if (t->spec.name == name) return t.get();
  }
  return nullptr;
}

const App::Resource* App::Catalog::find_resource(std::string_view uri) const {
  for (auto& r : resources) {
    if (r->spec.uri == uri) return r.get();
  }
  return nullptr;
}

const App::Prompt* App::Catalog::find_prompt(std::string_view name) const {
  for (auto& p : prompts) {
    if (p->spec.name == name) return p.get();
  }
  return nullptr;
}

App::App() : catalog_(std::make_shared<const Catalog>()) {}

template <class F>
void App::mutate(F&& f, std::optional<ListKind> changed) {
  std::function<void(ListKind)> notify;
  {
    std::unique_lock lock(mutex_);
    auto next = std::make_shared<Catalog>(*catalog_);
    if (!f(*next)) return;
    catalog_ = std::move(next);
    notify = listener_.list_changed;
  }
  if (changed && notify) notify(*changed);
}

namespace {
template <class Vec, class Pred>
bool erase_where(Vec& v, Pred pred) {
  auto it = std::remove_if(v.begin(), v.end(), pred);
  bool removed = it != v.end();
  v.erase(it, v.end());
  return removed;
}
}  // namespace

void App::render_tool_latency(std::string& out) const {
  auto c = catalog();
  out +=
      "# HELP mcpmesh_tool_duration_seconds time from a tools/call's arrival at its session to its "
      "answer, by tool\n# TYPE mcpmesh_tool_duration_seconds histogram\n";
  for (const auto& tool : c->tools) {
    // Tool names are the app's own; quotes and backslashes are escaped all the same.
    std::string label = "tool=\"";
    for (char ch : tool->spec.name) {
      if (ch == '"' || ch == '\\') label += '\\';
      if (ch == '\n') {
        label += "\\n";
        continue;
      }
      label += ch;
    }
    label += '"';
    tool->latency->render(out, "mcpmesh_tool_duration_seconds", label);
  }
}

void App::add_tool(ToolSpec spec, ToolHandler handler) {
  put_tool(std::make_shared<const Tool>(Tool{std::move(spec), std::move(handler), {}}));
}

void App::add_tool(ToolSpec spec, SyncToolHandler handler) {
  put_tool(std::make_shared<const Tool>(Tool{std::move(spec), {}, std::move(handler)}));
}

void App::put_tool(std::shared_ptr<const Tool> tool) {
  mutate(
      [&](Catalog& c) {
        erase_where(c.tools, [&](auto& t) { return t->spec.name == tool->spec.name; });
        c.tools.push_back(tool);
        return true;
      },
      ListKind::kTools);
}

bool App::remove_tool(std::string_view name) {
  bool removed = false;
  mutate(
      [&](Catalog& c) {
        return removed = erase_where(c.tools, [&](auto& t) { return t->spec.name == name; });
      },
      ListKind::kTools);
  return removed;
}

void App::add_resource(ResourceSpec spec, ResourceHandler handler) {
  auto res = std::make_shared<const Resource>(Resource{std::move(spec), std::move(handler)});
  mutate(
      [&](Catalog& c) {
        erase_where(c.resources, [&](auto& r) { return r->spec.uri == res->spec.uri; });
        c.resources.push_back(res);
        return true;
      },
      ListKind::kResources);
}

bool App::remove_resource(std::string_view uri) {
  bool removed = false;
  mutate(
      [&](Catalog& c) {
        return removed = erase_where(c.resources, [&](auto& r) { return r->spec.uri == uri; });
      },
      ListKind::kResources);
  return removed;
}

void App::add_resource_template(ResourceTemplateSpec spec, TemplateHandler handler,
                                TemplateLister lister) {
  auto t = std::make_shared<const Template>(
      Template{std::move(spec), std::move(handler), std::move(lister)});
  mutate(
      [&](Catalog& c) {
        erase_where(c.templates,
                    [&](auto& x) { return x->spec.uri_template == t->spec.uri_template; });
        c.templates.push_back(t);
        return true;
      },
      ListKind::kResources);
}

void App::add_prompt(PromptSpec spec, PromptHandler handler) {
  auto p = std::make_shared<const Prompt>(Prompt{std::move(spec), std::move(handler)});
  mutate(
      [&](Catalog& c) {
        erase_where(c.prompts, [&](auto& x) { return x->spec.name == p->spec.name; });
        c.prompts.push_back(p);
        return true;
      },
      ListKind::kPrompts);
}

bool App::remove_prompt(std::string_view name) {
  bool removed = false;
  mutate(
      [&](Catalog& c) {
        return removed = erase_where(c.prompts, [&](auto& p) { return p->spec.name == name; });
      },
      ListKind::kPrompts);
  return removed;
}

void App::add_completion(std::string ref_type, std::string ref, CompletionHandler handler) {
  mutate(
      [&](Catalog& c) {
        c.completions[ref_type + " " + ref] = std::move(handler);
        return true;
      },
      std::nullopt);
}

void App::notify_resource_updated(std::string_view uri) {
  std::function<void(std::string_view)> notify;
  {
    std::shared_lock lock(mutex_);
    notify = listener_.resource_updated;
  }
  if (notify) notify(uri);
}

void App::notify_list_changed(ListKind kind) {
  std::function<void(ListKind)> notify;
  {
    std::shared_lock lock(mutex_);
    notify = listener_.list_changed;
  }
  if (notify) notify(kind);
}

std::shared_ptr<const App::Catalog> App::catalog() const {
  std::shared_lock lock(mutex_);
  return catalog_;
}

void App::set_listener(Listener listener) {
  std::unique_lock lock(mutex_);
  listener_ = std::move(listener);
}

asio::awaitable<Result<InputResponses>> HandlerContext::ask(std::vector<InputRequest> inputs,
                                                            std::chrono::milliseconds deadline) {
  InputResponses answers;
  for (auto& input : inputs) {
    auto r = co_await request_client(input.method, std::move(input.params), deadline);
    if (!r) co_return r.error();
    answers.insert_or_assign(std::move(input.key), std::move(*r));
  }
  co_return answers;
}

asio::awaitable<Result<std::string>> sample_text(HandlerContext& ctx, std::string_view prompt,
                                                 std::int64_t max_tokens,
                                                 std::chrono::milliseconds deadline) {
  json::object content{{"type", "text"}, {"text", prompt}};
  json::object message{{"role", "user"}, {"content", std::move(content)}};
  json::object params{{"messages", json::array{std::move(message)}}, {"maxTokens", max_tokens}};
  auto r = co_await ctx.request_client("sampling/createMessage", std::move(params), deadline);
  if (!r) co_return r.error();
  std::string text;
  if (auto* c = r->if_contains("content"); c && c->is_object()) {
    if (auto* t = c->get_object().if_contains("text"); t && t->is_string()) text = t->get_string();
  }
  co_return text;
}

bool match_uri_template(std::string_view tmpl, std::string_view uri,
                        std::map<std::string, std::string>& vars) {
  std::size_t ti = 0, ui = 0;
  while (ti < tmpl.size()) {
    if (tmpl[ti] == '{') {
      auto close = tmpl.find('}', ti);
      if (close == std::string_view::npos) return false;
      std::string name(tmpl.substr(ti + 1, close - ti - 1));
      ti = close + 1;
      // A variable runs up to the next literal character of the template (or the end).
      char stop = ti < tmpl.size() ? tmpl[ti] : '\0';
      std::size_t end = stop ? uri.find(stop, ui) : uri.size();
      if (end == std::string_view::npos) return false;
      if (end == ui) return false;  // empty variable
      auto value = uri.substr(ui, end - ui);
      if (!stop && value.find('/') != std::string_view::npos) return false;
      vars[name] = std::string(value);
      ui = end;
    } else {
      if (ui >= uri.size() || uri[ui] != tmpl[ti]) return false;
      ++ti;
      ++ui;
    }
  }
  return ui == uri.size();
}

}  // namespace mcpmesh::mcp
