#include "support/ranks.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/test_dir.hpp"

namespace ckpt::test {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t length = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::vector<std::string> run_ranks(const std::filesystem::path& dir, const std::vector<std::string>& commands,
                                   int cap_s) {
  std::string script;
  for (std::size_t r = 0; r < commands.size(); ++r) {
    const auto out = (dir / ("rank" + std::to_string(r) + ".out")).string();
    script += "(timeout -s KILL " + std::to_string(cap_s) + " " + commands[r] + " > " + out + " 2>/dev/null; echo $? >> " +
              out + ") & ";
  }
  script += "wait";
  run_command(script);
  std::vector<std::string> results;
  for (std::size_t r = 0; r < commands.size(); ++r) {
    results.push_back(read_bytes(dir / ("rank" + std::to_string(r) + ".out")));
  }
  return results;
}

}  // namespace ckpt::test
