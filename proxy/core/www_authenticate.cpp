#include "pullgate/www_authenticate.hpp"

namespace pullgate {
namespace {

// tchar of RFC 7230 §3.2.6
bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
            return true;
        default:
            return false;
    }
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

class scanner {
public:
    explicit scanner(std::string_view s) : s_(s) {}
    bool done() const { return i_ >= s_.size(); }
    char peek() const { return done() ? '\0' : s_[i_]; }
    void skip_ws() {
        while (!done() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
    }
    void skip_ws_and_commas() {
        while (!done() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == ',')) ++i_;
    }
    std::string_view token() {
        std::size_t start = i_;
        while (!done() && is_tchar(s_[i_])) ++i_;
        return s_.substr(start, i_ - start);
    }
    // After the opening quote; false on an unterminated string.
    bool quoted(std::string& out) {
        ++i_;
        while (!done()) {
            char c = s_[i_++];
            if (c == '"') return true;
            if (c == '\\') {
                if (done()) return false;
                c = s_[i_++];
            }
            out += c;
        }
        return false;
    }
    std::size_t pos() const { return i_; }
    void seek(std::size_t p) { i_ = p; }
    void advance() { ++i_; }

private:
    std::string_view s_;
    std::size_t i_ = 0;
};

}  // namespace

std::string auth_challenge::param(std::string_view name) const {
    auto it = params.find(std::string(name));
    return it == params.end() ? std::string() : it->second;
}

std::vector<auth_challenge> parse_www_authenticate(std::string_view header) {
    std::vector<auth_challenge> out;
    scanner sc(header);
    sc.skip_ws_and_commas();
    while (!sc.done()) {
        std::string_view scheme = sc.token();
        if (scheme.empty()) break;  // garbage: stop, keep what we have
        auth_challenge ch;
        ch.scheme = lower(scheme);
        // A token68 right after the scheme ("Negotiate abc", "Basic abc=="):
        // a token followed by padding, a comma or the end belongs to this
        // challenge, it is not the next scheme.
        if (sc.peek() == ' ' || sc.peek() == '\t') {
            sc.skip_ws();
            const std::size_t mark = sc.pos();
            const std::string_view t = sc.token();
            while (sc.peek() == '=') sc.advance();
            sc.skip_ws();
            const bool token68 = !t.empty() && (sc.done() || sc.peek() == ',');
            if (!token68) sc.seek(mark);  // parameters (or the next challenge) start here
        }
        sc.skip_ws();
        // Parameters until the next scheme (a token not followed by '=') or the end.
        while (true) {
            sc.skip_ws_and_commas();
            if (sc.done()) break;
            const std::size_t mark = sc.pos();
            std::string_view name = sc.token();
            if (name.empty()) {
                sc.seek(header.size());  // malformed
                break;
            }
            sc.skip_ws();
            if (sc.peek() != '=') {
                sc.seek(mark);  // a new challenge starts here
                break;
            }
            sc.advance();
            if (sc.peek() == '=' || sc.done() || sc.peek() == ',') {
                // token68 ("abc==") rather than a parameter: skip its padding
                while (sc.peek() == '=') sc.advance();
                continue;
            }
            sc.skip_ws();
            std::string value;
            if (sc.peek() == '"') {
                if (!sc.quoted(value)) {
                    sc.seek(header.size());
                    break;
                }
            } else {
                value = std::string(sc.token());
            }
            ch.params.emplace(lower(name), std::move(value));  // first occurrence wins
        }
        out.push_back(std::move(ch));
    }
    return out;
}

std::optional<auth_challenge> find_challenge(const std::vector<auth_challenge>& all, std::string_view scheme) {
    for (const auto& c : all)
        if (c.scheme == scheme) return c;
    return std::nullopt;
}

}  // namespace pullgate
