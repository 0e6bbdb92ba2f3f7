// hull-bench-pipe: reads stdin to its end and prints how many bytes came and
// how fast, timed from the first byte to EOF (so start-up is not counted):
//   {"bytes": N, "seconds": S, "mb_per_s": R}
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <vector>

int main() {
  std::vector<char> buffer(1 << 20);
  unsigned long long total = 0;
  std::chrono::steady_clock::time_point first;
  while (true) {
    ssize_t n = ::read(0, buffer.data(), buffer.size());
    if (n <= 0) break;
    if (total == 0) first = std::chrono::steady_clock::now();
    total += static_cast<unsigned long long>(n);
  }
  double seconds =
      total == 0 ? 0
                 : std::chrono::duration<double>(std::chrono::steady_clock::now() - first).count();
  std::printf("{\"bytes\": %llu, \"seconds\": %.3f, \"mb_per_s\": %.1f}\n", total, seconds,
              seconds > 0 ? total / seconds / 1e6 : 0.0);
  return total == 0 ? 1 : 0;
}
