#include "test/harness/http_get.h"

#include <httplib.h>

#include "fmt/format.h"

namespace sluice::testing {

Result<HttpReply> HttpGet(const std::string& address, const std::string& path, std::chrono::milliseconds timeout) {
  httplib::Client client("http://" + address);
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  httplib::Result res = client.Get(path);
  if (!res) {
    return absl::UnavailableError(
        fmt::format("GET http://{}{}: {}", address, path, httplib::to_string(res.error())));
  }
  return HttpReply{.status = res->status, .content_type = res->get_header_value("Content-Type"), .body = res->body};
}

}  // namespace sluice::testing
