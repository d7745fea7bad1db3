case "$1" in
  --version) echo "greet $GREET_VERSION" ;;
  *) greet "$@" ;;
esac
